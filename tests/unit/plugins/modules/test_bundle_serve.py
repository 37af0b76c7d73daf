# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import os
import socket
import urllib.error
import urllib.request

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle import serve as S
from ansible_collections.ferry.airgap.plugins.modules import bundle_serve
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import make_bundle
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.net import free_port

RUNC = 'artifacts/x86_64/runc/runc.amd64'


@pytest.fixture
def env(tmp_path):
    root = tmp_path / 'bundle'
    make_bundle(root, arches=('x86_64',), big=2048)
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    port = free_port()
    yield {'root': str(root), 'run_dir': str(run_dir), 'port': port}
    state = S.read_state(str(run_dir), port)
    if state:
        S.stop(state, str(run_dir))


def args(env, **kw):
    a = {'path': env['root'], 'run_dir': env['run_dir'], 'port': env['port'], 'address': '127.0.0.1', 'token': 'tok1'}
    a.update(kw)
    return a


def get(port, path):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b''


def alive(pid):
    return S.proc_start_time(pid) is not None


def test_start_is_idempotent_and_stop(env, capsys):
    result, code = run_module(bundle_serve, args(env), capsys)
    assert code == 0 and result['changed'] is True and result['running'] is True
    pid = result['pid']
    assert alive(pid) and pid != os.getpid()
    assert result['url'] == 'http://127.0.0.1:%d/********' % env['port']   # the token is no_log: masked
    with open(os.path.join(env['root'], RUNC), 'rb') as fh:
        assert get(env['port'], '/tok1/' + RUNC) == (200, fh.read())
    assert get(env['port'], '/tok2/' + RUNC)[0] == 404

    result, code = run_module(bundle_serve, args(env), capsys)
    assert code == 0 and result['changed'] is False and result['pid'] == pid

    # other token: replaced
    result, code = run_module(bundle_serve, args(env, token='tok2'), capsys)
    assert code == 0 and result['changed'] is True and result['pid'] != pid and not alive(pid)
    pid = result['pid']
    assert get(env['port'], '/tok2/' + RUNC)[0] == 200 and get(env['port'], '/tok1/' + RUNC)[0] == 404

    result, code = run_module(bundle_serve, args(env, state='stopped'), capsys, check_mode=True)
    assert code == 0 and result['changed'] is True and alive(pid)

    result, code = run_module(bundle_serve, {'state': 'stopped', 'port': env['port'], 'run_dir': env['run_dir']}, capsys)
    assert code == 0 and result['changed'] is True and result['running'] is False
    assert not alive(pid) and os.listdir(env['run_dir']) == []
    with pytest.raises(socket.error):
        socket.create_connection(('127.0.0.1', env['port']), timeout=2)

    result, code = run_module(bundle_serve, {'state': 'stopped', 'port': env['port'], 'run_dir': env['run_dir']}, capsys)
    assert code == 0 and result['changed'] is False


def test_check_mode_starts_nothing(env, capsys):
    result, code = run_module(bundle_serve, args(env), capsys, check_mode=True)
    assert code == 0 and result['changed'] is True and result['pid'] is None
    assert os.listdir(env['run_dir']) == []
    with pytest.raises(socket.error):
        socket.create_connection(('127.0.0.1', env['port']), timeout=2)


def test_port_in_use(env, capsys):
    holder = socket.socket()
    holder.bind(('127.0.0.1', env['port']))
    holder.listen(1)
    try:
        result, code = run_module(bundle_serve, args(env), capsys)
    finally:
        holder.close()
    assert code == 1
    assert result['msg'] == ('port %d on 127.0.0.1 is already in use by another process: stop it or choose another port'
                             % env['port'])


@pytest.mark.parametrize('extra,msg', [
    ({'token': 'a/b'}, 'token may only hold'),
    ({'port': 0}, 'port must be between'),
    ({'idle_timeout': 0}, 'idle_timeout must be at least'),
    ({'path': '/nonexistent'}, 'cannot serve /nonexistent: cannot read /nonexistent/manifest.json'),
])
def test_bad_input(env, capsys, extra, msg):
    result, code = run_module(bundle_serve, args(env, **extra), capsys)
    assert code == 1 and msg in result['msg']
    assert os.listdir(env['run_dir']) == []


def test_dead_server_state_is_replaced(env, capsys):
    stale = {'pid': os.getpid(), 'start_time': 'other', 'port': env['port'], 'path': env['root'],
             'address': '127.0.0.1', 'token': 'tok1'}
    S.write_state(env['run_dir'], env['port'], stale)
    result, code = run_module(bundle_serve, args(env), capsys)
    assert code == 0 and result['changed'] is True and result['pid'] != os.getpid()
    assert get(env['port'], '/tok1/install.yml')[0] == 200
