# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import os

from ansible_collections.ferry.airgap.plugins.modules import bundle_artifact
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import siblings, write
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module


def args(tmp_path, sha, **kw):
    a = {'path': str(tmp_path / 'bundle'), 'name': 'k3s', 'arch': 'x86_64',
         'src': 'file://' + str(tmp_path / 'k3s-v1'), 'sha256': sha}
    a.update(kw)
    return a


def test_fetch_then_skip(tmp_path, capsys):
    sha = write(tmp_path / 'k3s-v1', b'k3s' * 100)
    result, code = run_module(bundle_artifact, args(tmp_path, 'sha256:' + sha.upper(), dest='k3s'), capsys)
    assert code == 0 and result['changed'] and result['size'] == 300 and result['sha256'] == sha
    assert result['path'] == str(tmp_path / 'bundle/artifacts/x86_64/k3s/k3s')
    assert os.path.isfile(result['path'])
    result, code = run_module(bundle_artifact, args(tmp_path, sha, dest='k3s'), capsys)
    assert code == 0 and result['changed'] is False


def test_check_mode_writes_nothing(tmp_path, capsys):
    sha = write(tmp_path / 'k3s-v1', b'k3s')
    result, code = run_module(bundle_artifact, args(tmp_path, sha), capsys, check_mode=True)
    assert code == 0 and result['changed'] and not os.path.exists(str(tmp_path / 'bundle'))


def test_wrong_sha256_fails_and_leaves_nothing(tmp_path, capsys):
    actual = write(tmp_path / 'k3s-v1', b'k3s')
    wrong = 'c' * 64
    result, code = run_module(bundle_artifact, args(tmp_path, wrong), capsys)
    assert code == 1 and result['failed']
    assert str(tmp_path / 'k3s-v1') in result['msg'] and wrong in result['msg'] and actual in result['msg']
    dest = tmp_path / 'bundle/artifacts/x86_64/k3s/k3s-v1'
    assert not dest.exists() and siblings(dest) == []


def test_bad_digest_and_bad_name(tmp_path, capsys):
    result, code = run_module(bundle_artifact, args(tmp_path, 'xyz'), capsys)
    assert code == 1 and "'xyz'" in result['msg']
    result, code = run_module(bundle_artifact, args(tmp_path, 'a' * 64, name='../k3s'), capsys)
    assert code == 1 and "'../k3s'" in result['msg']
    result, code = run_module(bundle_artifact, args(tmp_path, 'a' * 64, arch='ppc64le'), capsys)
    assert code == 1 and 'ppc64le' in result['msg']
