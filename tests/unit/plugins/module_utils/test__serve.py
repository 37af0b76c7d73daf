# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundle server: a real daemon on 127.0.0.1, spoken to over raw HTTP."""

import contextlib
import hashlib
import http.client
import os
import socket
import stat
import subprocess
import threading
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


# ---------------------------------------------------------------- hardening (issue 9, items 6 and 8)

EMPTY = 'apps/shop/1.0/empty.txt'


@pytest.fixture
def small(tmp_path):
    root = tmp_path / 'b'
    make_bundle(root, arches=('x86_64',), big=1024, extra={EMPTY: b''})
    return str(root)


@contextlib.contextmanager
def in_thread(root, **kw):
    """A BundleServer on 127.0.0.1 served by a thread of this process (its counters can be read)."""
    server = S.BundleServer(root, '127.0.0.1', 0, 'tok', **kw)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def state_of(server):
    return {'port': server.server_address[1]}


def wait_for(predicate, what):
    deadline = time.time() + 30
    while not predicate():
        assert time.time() < deadline, 'gave up waiting for ' + what
        time.sleep(0.02)


def test_suffix_range_of_an_empty_file_is_unsatisfiable(tmp_path):
    assert S.parse_range('bytes=-5', 0) == 'unsatisfiable'
    assert S.parse_range('bytes=0-', 0) == 'unsatisfiable'
    root = tmp_path / 'b'
    make_bundle(root, arches=('x86_64',), big=1024, extra={EMPTY: b''})
    with serving(root, tmp_path, token='tok') as state:
        status, headers, body = request(state, '/tok/' + EMPTY, headers={'Range': 'bytes=-5'})
        assert (status, headers['Content-Range'], body) == (416, 'bytes */0', b'')
        assert request(state, '/tok/' + EMPTY)[:3:2] == (200, b'')


@pytest.mark.parametrize('header', [
    'bytes=%s-' % ('9' * 4300),
    'bytes=0-%s' % ('9' * 4300),
    'bytes=-%s' % ('9' * 4300),
])
def test_absurdly_long_range_is_refused_and_the_server_lives_on(server, header):
    assert S.parse_range(header, 10) == 'unsatisfiable'
    status, headers, dummy = request(server, '/s3cr3t/' + RUNC, headers={'Range': header})
    assert status == 416 and headers['Content-Range'].startswith('bytes */')
    assert request(server, '/s3cr3t/manifest.json')[0] == 200
    # leading zeros are not digits of the position
    assert S.parse_range('bytes=%s5-' % ('0' * 4300), 10) == (5, 9)


def test_only_authenticated_requests_are_activity(small):
    with in_thread(small) as server:
        server._last = time.time() - 1000   # idle for 1000 s
        for path in ('/' + RUNC, '/wrong/' + RUNC, '/tok', '/tokx/install.yml'):
            assert request(state_of(server), path)[0] == 404
        assert request(state_of(server), '/tok/install.yml', method='PUT')[0] == 501
        assert server.idle_for() >= 1000 and server.requests == 0
        assert request(state_of(server), '/tok/install.yml')[0] == 200
        assert server.idle_for() < 1000 and server.requests == 1
        # a request with the token for a file the bundle does not list is still the play's host: activity
        server._last = time.time() - 1000
        assert request(state_of(server), '/tok/secret.txt')[0] == 404
        assert server.idle_for() < 1000


def test_connections_are_capped(small):
    with in_thread(small, max_connections=2) as server:
        idle = [socket.create_connection(('127.0.0.1', server.server_address[1]), timeout=10) for dummy in range(2)]
        try:
            wait_for(lambda: len(server._pending) == 2, 'two accepted connections')
            third = socket.create_connection(('127.0.0.1', server.server_address[1]), timeout=10)
            with third:
                answer = third.recv(4096)
            assert answer.startswith(b'HTTP/1.0 503 ') and server.refused == 1
            assert request(state_of(server), '/tok/install.yml')[0] == 503
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: not server._pending, 'the idle connections to end')
        assert request(state_of(server), '/tok/install.yml')[0] == 200


def test_slow_headers_are_dropped_authenticated_transfers_are_not(small):
    with in_thread(small) as server:
        slow = socket.create_connection(('127.0.0.1', server.server_address[1]), timeout=10)
        with slow:
            slow.sendall(b'GET /tok/install.yml HTTP/1.0\r\nX-Slow: ')   # headers never finished
            wait_for(lambda: len(server._pending) == 1, 'the slow connection')
            assert server.drop_slow(now=time.time() + 1) == 0            # within header_timeout: kept
            assert server.drop_slow(now=time.time() + server.header_timeout + 1) == 1
            assert slow.recv(4096) == b''                                # closed by the server
        # an authenticated request leaves the list of connections the deadline applies to
        conn = http.client.HTTPConnection('127.0.0.1', server.server_address[1], timeout=10)
        try:
            conn.request('GET', '/tok/' + RUNC)
            resp = conn.getresponse()
            assert resp.status == 200 and not server._pending
            assert server.drop_slow(now=time.time() + 1000) == 0
            assert len(resp.read()) == 1024
        finally:
            conn.close()


def test_max_lifetime_ends_a_busy_server(small):
    server = S.BundleServer(small, '127.0.0.1', 0, 'tok', idle_timeout=1000, max_lifetime=60)
    server.begin()                       # a transfer that never ends: never idle
    server.started -= 61                 # ... for longer than max_lifetime
    thread = threading.Thread(target=server.serve_until_idle, kwargs={'poll': 0.05})
    thread.daemon = True
    thread.start()
    thread.join(30)
    try:
        assert not thread.is_alive() and server.idle_for() == 0.0 and server.expired()
    finally:
        server.server_close()


def test_daemon_records_its_limits(small, tmp_path):
    state = S.start(small, str(tmp_path), '127.0.0.1', free_port(), 'tok', 60, max_lifetime=120, max_connections=3)
    try:
        assert (state['max_lifetime'], state['max_connections']) == (120, 3)
    finally:
        S.stop(state, str(tmp_path))


@pytest.mark.parametrize('mode', [0o777, 0o1777, 0o775, 0o757])
def test_run_dir_others_can_write_is_refused(small, tmp_path, mode):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    os.chmod(str(run_dir), mode)
    port = free_port()
    with pytest.raises(S.ServeError) as exc:
        S.start(small, str(run_dir), '127.0.0.1', port, 'tok', 60)
    assert str(exc.value).startswith('run_dir %s has mode %04o, expected no write permission for group and others'
                                     % (run_dir, mode))
    assert os.listdir(str(run_dir)) == []
    with pytest.raises(socket.error):
        socket.create_connection(('127.0.0.1', port), timeout=2)


def test_run_dir_of_another_user_is_refused(small, tmp_path):
    if os.geteuid() != 0:
        pytest.skip('needs root to give a directory away')
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    os.chown(str(run_dir), 4242, 4242)
    with pytest.raises(S.ServeError, match='belongs to uid 4242, expected root or uid 0'):
        S.start(small, str(run_dir), '127.0.0.1', free_port(), 'tok', 60)


def test_state_files_never_follow_a_planted_link(tmp_path, monkeypatch):
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    state_file, pid_file = S.state_paths(str(run_dir), 1)
    # the names the temporaries had: predictable
    for name in ('%s.tmp-%d' % (state_file, os.getpid()), pid_file + '.tmp'):
        os.symlink(str(victim), name)
    state = {'pid': 12345, 'start_time': 'x', 'port': 1, 'token': 'tok'}
    S.write_state(str(run_dir), 1, state)
    assert victim.read_bytes() == b'precious'
    assert S.read_state(str(run_dir), 1) == state
    assert stat.S_IMODE(os.lstat(state_file).st_mode) == 0o600 and stat.S_IMODE(os.lstat(pid_file).st_mode) == 0o644
    # even a link planted at the random name is never written through (O_EXCL|O_NOFOLLOW)
    monkeypatch.setattr(S.os, 'urandom', lambda n: b'\x00' * n)
    os.symlink(str(victim), '%s.tmp-%d-%s' % (state_file, os.getpid(), '00' * 6))
    with pytest.raises(OSError):
        S.write_state(str(run_dir), 1, dict(state, pid=999))
    assert victim.read_bytes() == b'precious' and S.read_state(str(run_dir), 1) == state


@pytest.fixture
def bystander():
    """A process the caller did not start as a bundle server."""
    proc = subprocess.Popen(['sleep', '300'])
    yield proc
    proc.kill()
    proc.wait()


def planted(run_dir, pid):
    return {'pid': pid, 'start_time': S.proc_start_time(pid), 'port': 1, 'path': '/x', 'address': '127.0.0.1',
            'token': ''}


@pytest.mark.parametrize('how', ['other owner', 'group writable', 'symlink'])
def test_state_file_not_the_callers_own_is_ignored(tmp_path, bystander, how):
    run_dir = str(tmp_path)
    state_file = S.state_paths(run_dir, 1)[0]
    S.write_state(run_dir, 1, planted(run_dir, bystander.pid))
    assert S.read_state(run_dir, 1)['pid'] == bystander.pid    # the caller's own file is read
    if how == 'other owner':
        if os.geteuid() != 0:
            pytest.skip('needs root to give a file away')
        os.chown(state_file, 4242, 4242)
    elif how == 'group writable':
        os.chmod(state_file, 0o620)
    else:
        os.rename(state_file, state_file + '.elsewhere')
        os.symlink(state_file + '.elsewhere', state_file)
    assert S.read_state(run_dir, 1) is None
    assert bystander.poll() is None
