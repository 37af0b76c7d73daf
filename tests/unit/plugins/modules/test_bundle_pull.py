# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bundle_pull against a real bundle server (bundle_serve's daemon) on 127.0.0.1."""

import hashlib
import json
import os
import stat
import subprocess

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pull import LOCK_FILE
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import serve as S
from ansible_collections.ferry.airgap.plugins.modules import bundle_pull, bundle_select, bundle_serve
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import BOTH_ARCHES, make_bundle, tree
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.net import free_port

CONTAINERD = 'artifacts/x86_64/containerd/containerd-1.6.20-linux-amd64.tar.gz'
RUNC = 'artifacts/x86_64/runc/runc.amd64'


@pytest.fixture
def site(tmp_path, capsys):
    """A bundle served by bundle_serve, and what bundle_select lists for an x86_64 host."""
    root = tmp_path / 'bundle'
    manifest = make_bundle(root, arches=BOTH_ARCHES, big=512 * 1024)
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    port = free_port()
    served, code = run_module(bundle_serve, {'path': str(root), 'address': '127.0.0.1', 'port': port, 'token': 'k3y',
                                             'run_dir': str(run_dir), 'idle_timeout': 120}, capsys)
    assert code == 0, served
    selection, code = run_module(bundle_select, {'path': str(root), 'arch': 'x86_64',
                                                 'artifacts': ['containerd', 'runc', 'cni-plugins']}, capsys)
    assert code == 0, selection
    yield {'root': str(root), 'manifest': manifest, 'port': port, 'url': 'http://127.0.0.1:%d/k3y' % port,
           'selection': selection, 'dest': str(tmp_path / 'mirror'), 'run_dir': str(run_dir), 'pid': served['pid']}
    run_module(bundle_serve, {'state': 'stopped', 'port': port, 'run_dir': str(run_dir)}, capsys)
    assert S.proc_start_time(served['pid']) is None


def fetch(site, capsys, check_mode=False, **kw):
    a = {'url': site['url'], 'dest': site['dest'], 'files': site['selection']['files'],
         'artifacts': site['selection']['artifacts'], 'retry_delay': 0}
    a.update(kw)
    return run_module(bundle_pull, a, capsys, check_mode=check_mode)


def test_fetch_rerun_and_facts(site, capsys):
    files = site['selection']['files']
    total = sum(f['size'] for f in files)
    result, code = fetch(site, capsys)
    assert code == 0 and result['changed'] is True, result
    assert sorted(result['fetched']) == sorted(f['path'] for f in files)
    assert result['present'] == 0 and result['resumed'] == [] and result['pruned'] == []
    assert result['bytes_transferred'] == result['bytes_fetched'] == result['bytes_total'] == total
    for f in files:
        path = os.path.join(site['dest'], f['path'])
        with open(path, 'rb') as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == f['sha256']
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert result['ansible_facts'] == {
        'ferry_artifacts': dict((name, os.path.join(site['dest'], rel)) for name, rel in site['selection']['artifacts'].items()),
        'ferry_image_store': os.path.join(site['dest'], 'images')}
    assert result['ansible_facts']['ferry_artifacts']['containerd'] == os.path.join(site['dest'], CONTAINERD)
    # the mirror is an OCI layout image_load can read: this host's platform only
    from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import OciError
    from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
    from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import platform_plan
    store = ImageStore(os.path.join(site['dest'], 'images'))
    for ref in site['selection']['images']:
        plan = platform_plan(store, ref, 'linux/amd64')
        assert all(os.path.isfile(store.blob_path(d)) for d, dummy, dummy2 in plan['blobs'])
    with pytest.raises(OciError):
        platform_plan(store, 'demo/web:1.0', 'linux/arm64')

    before = tree(site['dest'])
    result, code = fetch(site, capsys)
    assert code == 0 and result['changed'] is False
    assert result['fetched'] == [] and result['present'] == len(files)
    assert result['bytes_transferred'] == 0 and result['bytes_total'] == total
    assert tree(site['dest']) == before


def test_check_mode(site, capsys):
    result, code = fetch(site, capsys, check_mode=True, url=None)
    assert code == 0 and result['changed'] is True
    assert sorted(result['fetched']) == sorted(f['path'] for f in site['selection']['files'])
    assert result['bytes_fetched'] == result['bytes_total'] and result['bytes_transferred'] == 0
    assert result['ansible_facts']['ferry_image_store'] == os.path.join(site['dest'], 'images')
    assert not os.path.exists(site['dest'])
    # half there: only the rest would be fetched
    fetch(site, capsys, files=site['selection']['files'][:3])
    before = tree(site['dest'])
    result, code = fetch(site, capsys, check_mode=True)
    assert code == 0 and result['present'] == 3 and len(result['fetched']) == len(site['selection']['files']) - 3
    assert tree(site['dest']) == before


def test_resume(site, capsys):
    size = site['manifest']['files'][CONTAINERD]['size']
    with open(os.path.join(site['root'], CONTAINERD), 'rb') as fh:
        data = fh.read()
    part = os.path.join(site['dest'], CONTAINERD + '.part')
    os.makedirs(os.path.dirname(part))
    with open(part, 'wb') as fh:   # an interrupted earlier run
        fh.write(data[:size // 3])
    result, code = fetch(site, capsys)
    assert code == 0 and result['resumed'] == [CONTAINERD]
    assert result['bytes_transferred'] == result['bytes_total'] - size // 3
    with open(os.path.join(site['dest'], CONTAINERD), 'rb') as fh:
        assert fh.read() == data
    assert not os.path.exists(part)


def test_damaged_local_file_is_replaced(site, capsys):
    fetch(site, capsys)
    path = os.path.join(site['dest'], RUNC)
    with open(path, 'r+b') as fh:
        fh.write(b'bitrot')
    result, code = fetch(site, capsys)
    assert code == 0 and result['changed'] is True and result['fetched'] == [RUNC]
    assert result['bytes_transferred'] == site['manifest']['files'][RUNC]['size']
    with open(path, 'rb') as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == site['manifest']['files'][RUNC]['sha256']


def test_corrupted_on_the_server(site, capsys):
    with open(os.path.join(site['root'], RUNC), 'r+b') as fh:
        fh.write(b'tampered')
    with open(os.path.join(site['root'], RUNC), 'rb') as fh:
        actual = hashlib.sha256(fh.read()).hexdigest()
    result, code = fetch(site, capsys)
    assert code == 1 and result['failed']
    expected = site['manifest']['files'][RUNC]['sha256']
    assert result['msg'] == 'sha256 mismatch for %s from http://127.0.0.1:%d: expected %s, actual %s; nothing was kept' % (
        RUNC, site['port'], expected, actual)
    assert not os.path.exists(os.path.join(site['dest'], RUNC))
    assert not os.path.exists(os.path.join(site['dest'], RUNC + '.part'))
    # what was fetched before the failure is kept and reported
    assert result['fetched'] and RUNC not in result['fetched'] and result['changed'] is True


def test_server_down(site, capsys):
    run_module(bundle_serve, {'state': 'stopped', 'port': site['port'], 'run_dir': site['run_dir']}, capsys)
    result, code = fetch(site, capsys, retries=1)
    assert code == 1
    first = site['selection']['files'][0]['path']
    assert result['msg'].startswith('cannot fetch %s from the bundle server http://127.0.0.1:%d (2 attempts): cannot reach '
                                    'http://127.0.0.1:%d: ' % (first, site['port'], site['port']))
    assert 'Connection refused' in result['msg'] and result['changed'] is False and result['fetched'] == []


def test_wrong_token(site, capsys):
    result, code = fetch(site, capsys, url='http://127.0.0.1:%d/other' % site['port'])
    assert code == 1 and 'HTTP 404' in result['msg'] and 'wrong token' in result['msg']


def test_nothing_to_fetch_needs_no_url(site, capsys):
    fetch(site, capsys)
    result, code = fetch(site, capsys, url=None)
    assert code == 0 and result['changed'] is False
    os.unlink(os.path.join(site['dest'], RUNC))
    result, code = fetch(site, capsys, url=None)
    assert code == 1 and 'no url was given' in result['msg']


def test_prune(site, capsys):
    fetch(site, capsys)
    stale = os.path.join(site['dest'], 'images/blobs/sha256', 'f' * 64)
    with open(stale, 'wb') as fh:
        fh.write(b'old')
    result, code = fetch(site, capsys, check_mode=True, prune=True)
    assert code == 0 and result['pruned'] == ['images/blobs/sha256/' + 'f' * 64] and os.path.exists(stale)
    result, code = fetch(site, capsys, prune=True)
    assert code == 0 and result['changed'] is True and result['fetched'] == [] and not os.path.exists(stale)
    result, code = fetch(site, capsys, prune=True)
    assert code == 0 and result['changed'] is False


def test_bad_input(site, capsys):
    result, code = fetch(site, capsys, url='https://example/x')
    assert code == 1 and 'http://' in result['msg']
    result, code = fetch(site, capsys, files=[{'path': '../etc/passwd', 'size': 1, 'sha256': 'a' * 64}])
    assert code == 1 and 'files[0].path' in result['msg']
    assert LOCK_FILE not in (os.listdir(site['dest']) if os.path.isdir(site['dest']) else [])


# ---------------------------------------------------------------- hardening (issue 9, items 5 and 8)

@pytest.fixture
def small_fs(tmp_path):
    """A 256 KiB tmpfs (skips where it cannot be mounted)."""
    mnt = tmp_path / 'small'
    mnt.mkdir()
    if subprocess.call(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', str(mnt)]) != 0:
        pytest.skip('cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)')
    try:
        yield str(mnt)
    finally:
        subprocess.call(['umount', '-l', str(mnt)])


def test_token_is_an_option_and_never_shown(site, capsys):
    base = 'http://127.0.0.1:%d' % site['port']
    result, code = fetch(site, capsys, url=base, token='k3y')
    assert code == 0 and result['changed'] is True and len(result['fetched']) == len(site['selection']['files'])
    assert 'k3y' not in json.dumps(result)
    assert result['invocation']['module_args']['token'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    # failures name the server, never the token
    os.unlink(os.path.join(site['dest'], RUNC))
    result, code = fetch(site, capsys, url=base, token='n0tTheT0ken')
    assert code == 1 and result['msg'].startswith('the bundle server %s has no %s (HTTP 404)' % (base, RUNC))
    assert 'n0tTheT0ken' not in json.dumps(result)
    run_module(bundle_serve, {'state': 'stopped', 'port': site['port'], 'run_dir': site['run_dir']}, capsys)
    result, code = fetch(site, capsys, url=base + '/', token='k3y', retries=0)
    assert code == 1 and result['msg'].startswith('cannot fetch %s from the bundle server %s (1 attempts)' % (RUNC, base))
    assert 'k3y' not in json.dumps(result)


def test_url_with_userinfo_is_refused_and_masked(site, capsys):
    url = 'http://ferry:pa55w0rd@127.0.0.1:%d' % site['port']
    result, code = fetch(site, capsys, url=url, token='k3y')
    assert code == 1 and result['msg'] == (
        'url must not carry user:password@ (the bundle server takes a token option), got http://127.0.0.1:%d'
        % site['port'])
    assert 'pa55w0rd' not in json.dumps(result) and not os.path.exists(site['dest'])


def test_local_disk_full_fails_at_once_naming_the_hosts_filesystem(site, capsys, small_fs):
    dest = os.path.join(small_fs, 'mirror')
    result, code = fetch(site, capsys, dest=dest, retries=3)
    assert code == 1
    assert result['msg'].startswith("no space left on this host's filesystem %s (" % small_fs)
    assert ' while writing %s/' % dest in result['msg'] and 'not retried' in result['msg']
    assert 'attempts' not in result['msg'] and 'cannot fetch' not in result['msg']
    failed = result['msg'].split(' while writing ', 1)[1].split('.part: ', 1)[0]
    size = dict((f['path'], f['size']) for f in site['selection']['files'])[os.path.relpath(failed, dest)]
    fetched = sum(f['size'] for f in site['selection']['files'] if f['path'] in result['fetched'])
    assert result['bytes_transferred'] <= fetched + size   # one attempt at the file, no more
    assert not os.path.exists(failed + ".part")
