# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundle server: a real daemon on 127.0.0.1, spoken to over raw HTTP."""

import hashlib
import http.client
import os
import socket
import stat
import time

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle import serve as S
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import BOTH_ARCHES, make_bundle, serving, write
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.net import free_port

RUNC = 'artifacts/x86_64/runc/runc.amd64'


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp('bundle')
    manifest = make_bundle(root, arches=BOTH_ARCHES)
    write(os.path.join(str(root), 'secret.txt'), 'not listed in the manifest')
    os.symlink('/etc/passwd', os.path.join(str(root), 'passwd-link'))
    return str(root), manifest


@pytest.fixture(scope='module')
def server(bundle, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp('run')
    with serving(bundle[0], run_dir, token='s3cr3t') as state:
        yield state


def request(state, path, method='GET', headers=None):
    conn = http.client.HTTPConnection('127.0.0.1', state['port'], timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def read(root, rel):
    with open(os.path.join(root, rel), 'rb') as fh:
        return fh.read()


@pytest.mark.parametrize('header,size,expected', [
    (None, 10, None),
    ('bytes=0-', 10, (0, 9)),
    ('bytes=4-', 10, (4, 9)),
    ('bytes=2-5', 10, (2, 5)),
    ('bytes=2-50', 10, (2, 9)),
    ('bytes=-3', 10, (7, 9)),
    ('bytes=-30', 10, (0, 9)),
    ('bytes=10-', 10, 'unsatisfiable'),
    ('bytes=-0', 10, 'unsatisfiable'),
    ('bytes=5-2', 10, None),
    ('bytes=0-1,4-5', 10, None),
    ('items=0-1', 10, None),
    ('bytes=-', 10, None),
])
def test_parse_range(header, size, expected):
    assert S.parse_range(header, size) == expected


def test_get_whole_file(server, bundle):
    root, manifest = bundle
    status, headers, body = request(server, '/s3cr3t/' + RUNC)
    assert status == 200 and body == read(root, RUNC)
    assert hashlib.sha256(body).hexdigest() == manifest['files'][RUNC]['sha256']
    assert headers['Content-Length'] == str(len(body)) and headers['Accept-Ranges'] == 'bytes'


def test_manifest_and_head(server, bundle):
    root, dummy = bundle
    status, dummy, body = request(server, '/s3cr3t/manifest.json')
    assert status == 200 and body == read(root, 'manifest.json')
    status, headers, body = request(server, '/s3cr3t/' + RUNC, method='HEAD')
    assert status == 200 and body == b'' and int(headers['Content-Length']) == len(read(root, RUNC))


def test_range_requests(server, bundle):
    root, dummy = bundle
    data = read(root, RUNC)
    status, headers, body = request(server, '/s3cr3t/' + RUNC, headers={'Range': 'bytes=1000-'})
    assert status == 206 and body == data[1000:]
    assert headers['Content-Range'] == 'bytes 1000-%d/%d' % (len(data) - 1, len(data))
    status, headers, body = request(server, '/s3cr3t/' + RUNC, headers={'Range': 'bytes=10-19'})
    assert status == 206 and body == data[10:20] and headers['Content-Length'] == '10'
    status, headers, body = request(server, '/s3cr3t/' + RUNC, headers={'Range': 'bytes=%d-' % len(data)})
    assert status == 416 and headers['Content-Range'] == 'bytes */%d' % len(data)


@pytest.mark.parametrize('path', [
    '/' + RUNC,                                   # no token
    '/wrong/' + RUNC,                             # wrong token
    '/s3cr3t' + RUNC,                             # token glued to the path
    '/s3cr3t/secret.txt',                         # on disk, not in the manifest
    '/s3cr3t/passwd-link',                        # a link out of the bundle, not listed
    '/s3cr3t/../' + RUNC,                         # dot-dot
    '/s3cr3t/artifacts/x86_64/../x86_64/runc/runc.amd64',
    '/s3cr3t/%2e%2e/%2e%2e/etc/passwd',           # encoded dot-dot
    '/s3cr3t//' + RUNC,                           # empty component
    '/s3cr3t/artifacts',                          # a directory
    '/s3cr3t/',
    '/s3cr3t/manifest.json.sig',
])
def test_refused_paths(server, path):
    status, dummy, body = request(server, path)
    assert status == 404
    assert b'root:' not in body


def test_read_only(server):
    for method in ('PUT', 'POST', 'DELETE'):
        status, dummy, dummy2 = request(server, '/s3cr3t/' + RUNC, method=method)
        assert status == 501


def test_listed_file_swapped_for_a_link_is_refused(tmp_path):
    root = tmp_path / 'b'
    make_bundle(root, arches=('x86_64',), big=1024)
    target = os.path.join(str(root), RUNC)
    os.unlink(target)
    os.symlink('/etc/passwd', target)
    with serving(root, tmp_path, token='') as state:
        assert request(state, '/' + RUNC)[0] == 404
        assert request(state, '/install.yml')[0] == 200   # no token: served from the root


def test_state_files_and_stop(tmp_path):
    root = tmp_path / 'b'
    make_bundle(root, arches=('x86_64',), big=1024)
    state = S.start(str(root), str(tmp_path), '127.0.0.1', free_port(), 'tok', 60)
    state_file, pid_file = S.state_paths(str(tmp_path), state['port'])
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    with open(pid_file) as fh:
        assert int(fh.read()) == state['pid'] != os.getpid()
    assert S.read_state(str(tmp_path), state['port']) == state and S.is_running(state)
    assert state['path'] == str(root) and state['token'] == 'tok'
    # detached: its own session, not our child
    with open('/proc/%d/stat' % state['pid']) as fh:
        fields = fh.read().rsplit(')', 1)[1].split()
    assert int(fields[3]) != os.getsid(0)            # a new session (setsid in the first child) ...
    assert int(fields[3]) != state['pid']            # ... which it does not lead: double fork
    assert int(fields[1]) != os.getpid()
    assert S.stop(state, str(tmp_path)) is True
    assert S.proc_start_time(state['pid']) is None and not S.is_running(state)
    assert not os.path.exists(state_file) and not os.path.exists(pid_file)
    with pytest.raises(socket.error):
        socket.create_connection(('127.0.0.1', state['port']), timeout=2)
    assert S.stop(state, str(tmp_path)) is False


def test_port_in_use(tmp_path):
    root = tmp_path / 'b'
    make_bundle(root, arches=('x86_64',), big=1024)
    holder = socket.socket()
    holder.bind(('127.0.0.1', 0))
    holder.listen(1)
    try:
        with pytest.raises(S.ServeError, match='port %d on 127.0.0.1 is already in use' % holder.getsockname()[1]):
            S.start(str(root), str(tmp_path), '127.0.0.1', holder.getsockname()[1], None, 60)
    finally:
        holder.close()
    assert os.listdir(str(tmp_path)) == ['b']


def test_not_a_bundle(tmp_path):
    with pytest.raises(S.ServeError, match='cannot serve'):
        S.start(str(tmp_path), str(tmp_path), '127.0.0.1', free_port(), None, 60)


def test_exits_when_idle(tmp_path):
    root = tmp_path / 'b'
    make_bundle(root, arches=('x86_64',), big=1024)
    state = S.start(str(root), str(tmp_path), '127.0.0.1', free_port(), None, 1)
    try:
        assert request(state, '/install.yml')[0] == 200
        deadline = time.time() + 30
        while S.is_running(state) and time.time() < deadline:
            time.sleep(0.1)
        assert not S.is_running(state)
        assert S.read_state(str(tmp_path), state['port']) is None
    finally:
        S.stop(state, str(tmp_path))


def test_stale_state_is_not_running(tmp_path):
    state = {'pid': os.getpid(), 'start_time': 'not-our-start-time', 'port': 1, 'path': '/x', 'address': '', 'token': ''}
    assert not S.is_running(state)
    S.write_state(str(tmp_path), 1, state)
    assert S.stop(state, str(tmp_path)) is False   # a reused pid is never signalled
    assert S.read_state(str(tmp_path), 1) is None


def test_url_of():
    assert S.url_of({'address': '0.0.0.0', 'port': 8765, 'token': 'abc'}) == 'http://0.0.0.0:8765/abc'
    assert S.url_of({'address': '::', 'port': 1, 'token': ''}, host='fd00::1') == 'http://[fd00::1]:1'
