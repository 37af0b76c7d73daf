# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from ansible.module_utils.testing import patch_module_args

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
    assert result['url'] == 'http://127.0.0.1:%d' % env['port']   # the token is not in the result, not even masked
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
    ({'idle_timeout': 600, 'max_lifetime': 599}, 'max_lifetime must be at least idle_timeout (600 seconds), got 599'),
    ({'max_connections': 0}, 'max_connections must be at least 1, got 0'),
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


def test_result_and_output_never_carry_the_token(env, capsys):
    for extra in ({}, {}, {'state': 'stopped'}):
        with patch_module_args(dict(args(env, token='Zq7secretToken', **extra))):
            with pytest.raises(SystemExit):
                bundle_serve.main()
        out = capsys.readouterr().out
        assert 'Zq7secretToken' not in out and '********' not in json.loads(out).get('url', '')


@pytest.mark.parametrize('mode', [0o1777, 0o777, 0o770])
def test_run_dir_others_can_write_is_refused(env, capsys, mode):
    os.chmod(env['run_dir'], mode)
    result, code = run_module(bundle_serve, args(env), capsys)
    assert code == 1 and result['msg'].startswith(
        'run_dir %s has mode %04o, expected no write permission for group and others' % (env['run_dir'], mode))
    assert os.listdir(env['run_dir']) == []
    with pytest.raises(socket.error):
        socket.create_connection(('127.0.0.1', env['port']), timeout=2)


def test_planted_state_file_never_makes_it_kill(env, capsys):
    if os.geteuid() != 0:
        pytest.skip('needs root to give a file away')
    victim = subprocess.Popen(['sleep', '300'])
    try:
        S.write_state(env['run_dir'], env['port'], {
            'pid': victim.pid, 'start_time': S.proc_start_time(victim.pid), 'port': env['port'], 'path': env['root'],
            'address': '127.0.0.1', 'token': 'tok1'})
        os.chown(S.state_paths(env['run_dir'], env['port'])[0], 4242, 4242)   # planted by another user
        result, code = run_module(bundle_serve, {'state': 'stopped', 'port': env['port'], 'run_dir': env['run_dir']},
                                  capsys)
        assert code == 0 and result['changed'] is False and victim.poll() is None
        result, code = run_module(bundle_serve, args(env), capsys)
        assert code == 0 and result['changed'] is True and result['pid'] != victim.pid and victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_address_not_of_this_host(env, capsys):
    result, code = run_module(bundle_serve, args(env, address='192.0.2.1'), capsys)
    assert code == 1 and result['msg'] == (
        'cannot listen on 192.0.2.1 port %d: 192.0.2.1 is not an address of this host' % env['port'])
    assert os.listdir(env['run_dir']) == []
