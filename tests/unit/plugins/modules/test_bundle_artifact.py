# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import hashlib
import http.server
import json
import os
import threading

import pytest

from ansible_collections.ferry.airgap.plugins.modules import bundle_artifact
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import EM_AARCH64, EM_X86_64, elf, siblings, write
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.net import free_port


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


def test_an_x86_64_binary_declared_aarch64_is_refused(tmp_path, capsys):
    sha = write(tmp_path / 'k3s-v1', elf(EM_X86_64))
    result, code = run_module(bundle_artifact, args(tmp_path, sha, arch='aarch64', dest='k3s'), capsys)
    assert code == 1 and result['failed']
    assert result['msg'] == (
        'artifact k3s for aarch64 is an x86_64 ELF binary (e_machine 62), not aarch64: file://%s; put the aarch64 '
        'build in the spec (src and sha256), or declare this file for arch x86_64; nothing was kept' % (tmp_path / 'k3s-v1'))
    dest = tmp_path / 'bundle/artifacts/aarch64/k3s/k3s'
    assert not dest.exists() and siblings(dest) == []
    sha = write(tmp_path / 'k3s-v1', elf(EM_AARCH64))
    result, code = run_module(bundle_artifact, args(tmp_path, sha, arch='aarch64', dest='k3s'), capsys)
    assert code == 0 and result['changed'] and dest.exists()


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


# ---------------------------------------------------------------- credentials in URLs (issue 9, item 5)

class _Files(http.server.BaseHTTPRequestHandler):
    body = b'k3s-binary'
    auth = []

    def do_GET(self):
        self.auth.append(self.headers.get('Authorization'))
        self.send_response(200)
        self.send_header('Content-Length', str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def files_server():
    server = http.server.HTTPServer(('127.0.0.1', 0), _Files)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05})
    thread.daemon = True
    thread.start()
    _Files.auth = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_url_credentials_never_shown(tmp_path, capsys, files_server):
    url = 'http://ferry:pa55w0rd@127.0.0.1:%d/k3s' % files_server
    good = hashlib.sha256(_Files.body).hexdigest()
    result, code = run_module(bundle_artifact, args(tmp_path, good, src=url), capsys)
    assert code == 0 and result['changed'] is True and 'pa55w0rd' not in json.dumps(result)
    assert result['path'] == str(tmp_path / 'bundle/artifacts/x86_64/k3s/k3s')
    # a wrong digest names the source, without its password
    wrong = 'c' * 64
    result, code = run_module(bundle_artifact, args(tmp_path, wrong, src=url), capsys)
    assert code == 1 and result['msg'].startswith('sha256 mismatch for http://127.0.0.1:%d/k3s: expected %s, actual %s' % (
        files_server, wrong, good))
    assert 'pa55w0rd' not in json.dumps(result)
    # nothing listening
    dead = 'http://ferry:pa55w0rd@127.0.0.1:%d/k3s' % free_port()
    result, code = run_module(bundle_artifact, args(tmp_path, wrong, src=dead, dest='k3s-2'), capsys)
    assert code == 1 and result['msg'].startswith('cannot open http://127.0.0.1:')
    assert 'pa55w0rd' not in json.dumps(result) and 'ferry:' not in result['msg']
    # bad input: the message names the URL without its password either
    result, code = run_module(bundle_artifact, args(tmp_path, 'xyz', src=url), capsys)
    assert code == 1 and result['msg'] == "sha256 for http://127.0.0.1:%d/k3s must be 64 hexadecimal characters, got 'xyz'" % (
        files_server)
    assert 'pa55w0rd' not in json.dumps(result)
