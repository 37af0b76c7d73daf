# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import os

import pytest

from ansible_collections.ferry.airgap.plugins.modules import bundle_select
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import BOTH_ARCHES, make_bundle, tree
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp('bundle')
    return str(root), make_bundle(root, arches=BOTH_ARCHES)


def test_select(bundle, capsys):
    root, manifest = bundle
    before = tree(root)
    result, code = run_module(bundle_select, {'path': root, 'arch': 'aarch64',
                                              'artifacts': ['containerd', 'runc', 'cni-plugins']}, capsys)
    assert code == 0 and result['changed'] is False
    assert result['platform'] == 'linux/arm64'
    assert result['artifacts']['runc'] == 'artifacts/aarch64/runc/runc.arm64'
    assert sorted(result['images']) == ['demo/pause:1.0', 'demo/web:1.0']
    assert result['images_skipped'] == ['demo/tool:1.0'] and result['apps'] == {}
    assert set(result['images']['demo/web:1.0']) == {'digest', 'platform_digest'}
    paths = [f['path'] for f in result['files']]
    assert paths == sorted(paths) and 'images/index.json' in paths and 'images/oci-layout' in paths
    assert not [p for p in paths if 'x86_64' in p]
    assert result['bytes'] == sum(manifest['files'][p]['size'] for p in paths)
    assert (result['name'], result['version']) == ('shop', '1.0')
    assert tree(root) == before


def test_check_mode_and_options(bundle, capsys):
    root, dummy = bundle
    result, code = run_module(bundle_select, {'path': root, 'arch': 'x86_64', 'images': [], 'apps': ['shop']}, capsys,
                              check_mode=True)
    assert code == 0 and result['changed'] is False
    assert [f['path'] for f in result['files']] == ['apps/shop/1.0/templates/deploy.yaml', 'apps/shop/1.0/values.yaml']


@pytest.mark.parametrize('args,msg', [
    ({'arch': 'x86_64', 'artifacts': ['k3s']}, "bundle shop 1.0 has no artifact 'k3s' for x86_64 (it has for x86_64: "
                                               "cni-plugins, containerd, runc; noarch: charts)"),
    ({'arch': 'x86_64', 'images': ['demo/none:1']}, 'bundle shop 1.0 has no image demo/none:1 (it has: demo/pause:1.0, '
                                                    'demo/tool:1.0, demo/web:1.0)'),
    ({'arch': 'aarch64', 'images': ['demo/tool:1.0']}, 'bundle shop 1.0: image demo/tool:1.0 has no platform linux/arm64 '
                                                       '(it has: linux/amd64)'),
])
def test_errors(bundle, capsys, args, msg):
    root, dummy = bundle
    result, code = run_module(bundle_select, dict(args, path=root), capsys)
    assert code == 1 and result['failed'] and result['msg'] == msg


def test_bundle_without_the_arch(tmp_path, capsys):
    make_bundle(tmp_path, arches=('x86_64',), big=10)
    result, code = run_module(bundle_select, {'path': str(tmp_path), 'arch': 'aarch64', 'artifacts': ['runc']}, capsys)
    assert code == 1
    assert result['msg'] == 'bundle shop 1.0 has no aarch64 binaries or images (it carries: x86_64)'


def test_missing_bundle(tmp_path, capsys):
    result, code = run_module(bundle_select, {'path': os.path.join(str(tmp_path), 'nope'), 'arch': 'x86_64'}, capsys)
    assert code == 1 and 'cannot read' in result['msg']
