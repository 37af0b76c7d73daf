# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module k3s_cleanup in-process against the fake host of test_support.k3s_host: check mode predicts and changes
nothing, a run removes and reports what it removed, a second run changes nothing, leftovers fail."""

import pytest

from ansible_collections.ferry.airgap.plugins.modules import k3s_cleanup
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.k3s_host import FakeHost, k3s_node
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module


@pytest.fixture
def fake(tmp_path, monkeypatch):
    host = FakeHost(tmp_path)
    monkeypatch.setattr(k3s_cleanup.cleanup, 'Host', lambda runner, which=None: host.host())
    return host


def args(tmp_path, **more):
    files = tmp_path / 'files'
    result = dict(paths=[str(files / 'etc' / 'rancher' / 'k3s'), str(files / 'data'), str(files / 'kubelet')],
                  keep=[str(files / 'data' / 'storage')],
                  mount_dirs=['/run/k3s', '/var/lib/rancher/k3s', '/var/lib/kubelet'])
    result.update(more)
    return result


def test_check_mode_predicts_and_changes_nothing(fake, tmp_path, capsys):
    k3s_node(fake, tmp_path / 'files')
    result, code = run_module(k3s_cleanup, args(tmp_path), capsys, check_mode=True, diff=True)
    assert code == 0 and result['changed'] is True
    removed = result['removed']
    assert [p.split()[1] for p in removed['processes']] == ['containerd-shim', 'pause', 'busybox', 'httpd',
                                                            'containerd-shim', 'sh']
    assert removed['interfaces'] == ['vethdec3e5f7', 'cni0', 'flannel.1']
    assert '/var/lib/kubelet' in removed['mounts'] and len(removed['iptables']) == 17
    assert removed['paths'] == sorted(str(tmp_path / 'files' / p) for p in
                                      ('etc/rancher/k3s', 'data/agent', 'data/server', 'kubelet'))
    assert 'interfaces: cni0\n' in result['diff']['before'] and result['diff']['after'] == ''
    assert fake.killed == [] and [c for c in fake.calls if not c[0].endswith('-save')] == []
    assert (tmp_path / 'files' / 'data' / 'agent').is_dir()


def test_run_removes_then_a_second_run_changes_nothing(fake, tmp_path, capsys):
    k3s_node(fake, tmp_path / 'files')
    result, code = run_module(k3s_cleanup, args(tmp_path), capsys)
    assert code == 0 and result['changed'] is True
    assert len(result['removed']['processes']) == 6 and result['removed']['netns']
    assert sorted((tmp_path / 'files' / 'data').iterdir()) == [tmp_path / 'files' / 'data' / 'storage']
    result, code = run_module(k3s_cleanup, args(tmp_path), capsys)
    assert code == 0 and result['changed'] is False
    assert result['removed'] == dict((key, []) for key in k3s_cleanup.cleanup.CATEGORIES)


def test_a_host_without_k3s_is_no_error(fake, tmp_path, capsys):
    fake.process(1, 0, '/sbin/init', 'init')
    for mode in (True, False):
        result, code = run_module(k3s_cleanup, args(tmp_path), capsys, check_mode=mode)
        assert code == 0 and result['changed'] is False, result


def test_what_is_still_there_afterwards_fails_the_task_by_name(fake, tmp_path, capsys):
    fake.interface('cni0')
    fake.run = lambda argv, data=None: (0, '', '')  # ip link delete "succeeds", and cni0 stays
    result, code = run_module(k3s_cleanup, args(tmp_path), capsys)
    assert code == 1 and result['failed'] is True
    assert result['msg'] == ("k3s's state is still on the host after the removal: cni0. Stop whatever restarts it "
                             "(a k3s unit not managed by Ferry?) and run again")


def test_a_refused_removal_fails_with_its_reason(fake, tmp_path, capsys):
    (tmp_path / 'files' / 'kubelet' / 'pods').mkdir(parents=True)
    fake.mount('1', '0', '0:1', '/', '/')
    fake.mount('2', '1', '0:2', '/', str(tmp_path / 'files' / 'kubelet' / 'pods'))  # not in mount_dirs: stays
    result, code = run_module(k3s_cleanup, args(tmp_path), capsys)
    assert code == 1
    assert result['msg'] == '%s is not removed: %s still mounted below it (unmount it first)' % (
        tmp_path / 'files' / 'kubelet', tmp_path / 'files' / 'kubelet' / 'pods')
