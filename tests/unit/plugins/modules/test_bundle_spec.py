# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import json

from ansible_collections.ferry.airgap.plugins.modules import bundle_spec
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module

SPEC = """
name: shop
version: "2024.06.1"
arches: [x86_64]
artifacts:
  - {name: k3s, arch: x86_64, src: "https://example.invalid/k3s", sha256: "%s"}
images:
  - ref: docker.io/library/redis:7
    registry: {username: bot, password: hunter2}
apps:
  - {name: shop, version: "1.0", src: apps/shop}
"""


def test_valid_spec_file(tmp_path, capsys):
    p = tmp_path / 'bundle.yml'
    p.write_text(SPEC % ('ab' * 32))
    result, code = run_module(bundle_spec, {'path': str(p)}, capsys)
    assert code == 0 and result['changed'] is False
    spec = result['spec']
    assert spec['artifacts'][0]['dest'] == 'k3s' and spec['apps'][0]['src'] == str(tmp_path / 'apps/shop')
    assert spec['images'][0]['registry']['password'] == '********' and 'hunter2' not in str(result)
    assert result['counts'] == {'arches': 1, 'artifacts': 1, 'images': 1, 'apps': 1}


def test_missing_sha256_is_named(tmp_path, capsys):
    p = tmp_path / 'bundle.json'
    p.write_text(json.dumps({'name': 'shop', 'version': '1', 'arches': ['x86_64'],
                             'artifacts': [{'name': 'k3s', 'arch': 'x86_64', 'src': '/x'}]}))
    result, code = run_module(bundle_spec, {'path': str(p)}, capsys)
    assert code == 1 and result['failed']
    assert result['msg'] == 'invalid bundle spec: artifacts[0].sha256: required key missing (in %s)' % p


def test_unsupported_arch_is_named(tmp_path, capsys):
    p = tmp_path / 'bundle.yml'
    p.write_text((SPEC % ('ab' * 32)).replace('arches: [x86_64]', 'arches: [x86_64, ppc64le]'))
    result, code = run_module(bundle_spec, {'path': str(p)}, capsys)
    assert code == 1 and 'arches[1]' in result['msg'] and "'ppc64le'" in result['msg']


def test_bad_hex_is_named(tmp_path, capsys):
    p = tmp_path / 'bundle.yml'
    p.write_text(SPEC % 'not-a-digest')
    result, code = run_module(bundle_spec, {'path': str(p)}, capsys)
    assert code == 1 and 'artifacts[0].sha256' in result['msg'] and 'not-a-digest' in result['msg']


def test_a_parsed_spec_is_not_an_argument(tmp_path, capsys):
    # a spec passed as an argument would carry its registry passwords into invocation and the host's log:
    # there is no such option any more
    result, code = run_module(bundle_spec, {'path': str(tmp_path / 'bundle.yml'), 'spec': {}}, capsys)
    assert code == 1 and 'Unsupported parameters' in result['msg'] and 'spec' in result['msg']
