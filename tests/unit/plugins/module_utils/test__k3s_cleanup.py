# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_runtime.k3s_cleanup: what is k3s's (and only that) is found in a fake /proc, mountinfo, /sys/class/net and
iptables-save output (the lines below are what k3s v1.22.5 made on a test host), and removed."""

import os

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._runtime import k3s_cleanup as kc
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.k3s_host import BIN, DATA, SAVE, FakeHost, k3s_node

KEPT_FILTER = """*filter
:INPUT ACCEPT [96:41616]
:FORWARD ACCEPT [0:0]
:SITE-FW - [0:0]
-A INPUT -p tcp -m tcp --dport 2222 -m comment --comment "site ssh" -j SITE-FW
-A FORWARD -s 10.99.0.0/16 -j ACCEPT
-A FORWARD -s 10.42.0.0/16 -m comment --comment "site: keep pods out of the vault" -j DROP
-A SITE-FW -j ACCEPT
-A SITE-FW -m comment --comment "tecnical debt" -j RETURN
COMMIT
"""


def test_filter_save_removes_k3s_chains_and_rules_and_keeps_every_other_rule():
    text, removed = kc.filter_save(SAVE, ['10.42.0.0/16'])
    # only the tables that change (raw has nothing of k3s's: not restored, so not touched)
    assert [line for line in text.splitlines() if line.startswith('*')] == ['*mangle', '*filter', '*nat']
    assert KEPT_FILTER in text
    assert '*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n' in text
    nat = text[text.index('*nat'):]
    assert nat == ('*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n'
                   '-A POSTROUTING -s 192.168.77.0/24 -j MASQUERADE\nCOMMIT\n')
    assert 'NOTRACK' not in text
    assert '*filter -A FORWARD -s 10.42.0.0/16 -j ACCEPT' in removed
    assert '*nat -A POSTROUTING -m comment --comment "K8S pods" -j RETURN' in removed
    assert '*filter :KUBE-FIREWALL - [0:0]' in removed
    assert len(removed) == 15, removed


def test_flannel_network_rules_only_with_the_network_and_only_uncommented():
    _text, removed = kc.filter_save(SAVE, [])
    assert not [line for line in removed if '10.42.0.0/16 -j ACCEPT' in line]
    assert not [line for line in removed if 'MASQUERADE --random-fully' in line]
    text, _removed = kc.filter_save(SAVE, ['10.42.0.0/16'])
    assert 'keep pods out of the vault' in text


def test_filter_save_of_a_host_without_k3s_changes_nothing():
    clean = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m comment --comment "site ssh" -j ACCEPT\nCOMMIT\n'
    assert kc.filter_save(clean, ['10.42.0.0/16']) == ('', [])


@pytest.mark.parametrize('rule, k3s', [
    ('-A KUBE-SERVICES -j RETURN', True),
    ('-A FORWARD -g CNI-FORWARD', True),
    ('-A INPUT -m comment --comment kube-proxy -j ACCEPT', True),
    ('-A INPUT -m comment --comment "Flannel forward" -j ACCEPT', True),
    ('-A INPUT -m comment --comment "cni0 bridge" -j ACCEPT', True),
    ('-A INPUT -m comment --comment "mykube thing" -j ACCEPT', False),
    ('-A INPUT -m comment --comment "docker-kube" -j ACCEPT', True),
    ('-A DOCKER -j RETURN', False),
    ('-A KUBEX -j RETURN', False),
])
def test_k3s_rule(rule, k3s):
    assert kc.k3s_rule(rule) is k3s


def test_flannel_networks():
    env = 'FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.1.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\n'
    assert kc.flannel_networks(env) == ['10.42.0.0/16', '2001:cafe:42::/56']
    assert kc.flannel_networks(None) == []


@pytest.fixture
def fake(tmp_path):
    return FakeHost(tmp_path)


def cleanup_of(fake, files, keep=True):
    return kc.Cleanup(fake.host(), DATA, mount_dirs=['/run/k3s', DATA, '/var/lib/kubelet', str(files / 'none')],
                      paths=[str(files / 'etc' / 'rancher' / 'k3s'), str(files / 'data'), str(files / 'kubelet'),
                             str(files / 'link-*'), str(files / 'missing')],
                      keep=[str(files / 'data' / 'storage' / 'pvc-test')] if keep else [], own_pid=99999)


def test_scan_finds_only_k3s_things(fake, tmp_path):
    files = tmp_path / 'files'
    k3s_node(fake, files)
    found = cleanup_of(fake, files).scan()
    assert [p.split()[0] for p in found['processes']] == ['2511', '2533', '2568', '2600', '2700', '2800']
    mounts = found['mounts']
    assert sorted(mounts) == sorted([
        '/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/b2b9/rootfs',
        '/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/b2b9/rootfs',
        '/run/k3s/containerd/io.containerd.grpc.v1.cri/sandboxes/b2b9/shm',
        '/var/lib/kubelet/pods/b30d/volumes/kubernetes.io~projected/kube api',
        str(fake.netns / 'cni-3b87'), '/var/lib/kubelet'])
    assert mounts.index('/var/lib/kubelet') == len(mounts) - 1 or str(fake.netns).count('/') < 3
    assert mounts.index('/var/lib/kubelet/pods/b30d/volumes/kubernetes.io~projected/kube api') < \
        mounts.index('/var/lib/kubelet')
    assert set(found['mounts']) >= {'/var/lib/kubelet', str(fake.netns / 'cni-3b87')}
    assert '/var/lib/rancher' not in found['mounts'] and '/var/lib/kubeletdata' not in found['mounts']
    assert found['netns'] == [str(fake.netns / 'cni-3b87')]
    assert found['interfaces'] == ['vethdec3e5f7', 'cni0', 'flannel.1']
    assert len([line for line in found['iptables'] if line.startswith("iptables: ")]) == 15
    assert found['iptables'][0].startswith('ip6tables: *filter')
    data = files / 'data'
    assert found['paths'] == sorted([
        str(files / 'etc' / 'rancher' / 'k3s'), str(data / 'agent'), str(data / 'server'),
        str(data / 'storage' / 'pvc-other'), str(files / 'kubelet'), str(files / 'link-to-storage')])


def test_mounts_deepest_first_and_a_disk_at_a_k3s_directory_stays_mounted():
    mounts = [
        {'id': '1', 'parent': '0', 'dev': '8:1', 'root': '/', 'point': '/'},
        {'id': '2', 'parent': '1', 'dev': '8:17', 'root': '/', 'point': '/var/lib/rancher/k3s'},  # the site's disk
        {'id': '3', 'parent': '2', 'dev': '0:50', 'root': '/', 'point': '/var/lib/rancher/k3s/agent/x'},
        {'id': '4', 'parent': '1', 'dev': '8:1', 'root': '/var/lib/kubelet', 'point': '/var/lib/kubelet'},
        {'id': '5', 'parent': '4', 'dev': '0:51', 'root': '/', 'point': '/var/lib/kubelet/pods/a/volumes/b'},
        {'id': '6', 'parent': '1', 'dev': '8:1', 'root': '/srv', 'point': '/run/k3s'},  # a bind of another place
        {'id': '7', 'parent': '1', 'dev': '0:4', 'root': 'net:[1]', 'point': '/run/netns/cni-1'},
        {'id': '8', 'parent': '1', 'dev': '0:4', 'root': 'net:[2]', 'point': '/run/netns/other'},
    ]
    assert kc.select_mounts(mounts, kc.MOUNT_DIRS) == [
        '/var/lib/kubelet/pods/a/volumes/b', '/var/lib/rancher/k3s/agent/x', '/run/netns/cni-1', '/var/lib/kubelet']
    # /var is a filesystem of its own: the kubelet's bind has root /lib/kubelet
    var = [{'id': '1', 'parent': '0', 'dev': '8:1', 'root': '/', 'point': '/'},
           {'id': '2', 'parent': '1', 'dev': '8:2', 'root': '/', 'point': '/var'},
           {'id': '3', 'parent': '2', 'dev': '8:2', 'root': '/lib/kubelet', 'point': '/var/lib/kubelet'}]
    assert kc.select_mounts(var, kc.MOUNT_DIRS) == ['/var/lib/kubelet']


def test_mountinfo_escapes(fake):
    fake.mount('1', '0', '0:1', '/', '/')
    fake.mount('2', '1', '0:2', '/', '/run/k3s/a b')
    assert [m['point'] for m in kc.read_mounts(str(fake.proc / 'self' / 'mountinfo'))] == ['/', '/run/k3s/a b']


def test_processes_never_pid_1_nor_this_module_and_its_parents(fake):
    fake.process(1, 0, BIN + 'k3s', 'k3s')  # even a k3s pid 1
    fake.process(10, 1, BIN + 'containerd-shim-runc-v2', 'containerd-shim')
    fake.process(11, 10, '/bin/sh', 'sh')  # say Ansible ran from inside a container's tree
    fake.process(12, 11, '/usr/bin/python3', 'python3')
    fake.process(13, 10, '/pause', 'pause')
    table = kc.read_processes(str(fake.proc))
    assert kc.select_processes(table, DATA, own_pid=12) == [13]  # 10, 11 are this module's parents
    assert kc.select_processes(table, DATA, own_pid=99) == [10, 11, 12, 13]


def test_apply_removes_everything_found_and_keeps_the_rest(fake, tmp_path):
    files = tmp_path / 'files'
    k3s_node(fake, files)
    work = cleanup_of(fake, files)
    before = work.scan()
    work.apply()
    after = work.scan()
    assert all(after[key] == [] for key in kc.CATEGORIES), after
    assert kc.changed(before, after) == before
    assert sorted(fake.killed) == [2511, 2533, 2568, 2600, 2700, 2800]
    assert sorted(os.listdir(str(fake.proc))) == ['1', '2900', '2950', '30', '77', 'self']
    assert [m[4] for m in fake.mounts] == ['/', '/var/lib/rancher', '/var/lib/kubeletdata']
    assert os.listdir(str(fake.netns)) == ['site-ns']
    assert sorted(os.listdir(str(fake.sys_net))) == ['cni0x', 'eth0', 'lo', 'veth0site']
    assert KEPT_FILTER in fake.saves['iptables'] and '*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING' in fake.saves['iptables']
    assert 'KUBE' not in fake.saves['iptables'] and 'KUBE' not in fake.saves['ip6tables']
    assert (files / 'data' / 'storage' / 'pvc-test' / 'data.txt').read_text() == 'x'
    assert sorted(os.listdir(str(files / 'data'))) == ['storage']
    assert os.listdir(str(files / 'data' / 'storage')) == ['pvc-test']
    assert not (files / 'etc' / 'rancher' / 'k3s').exists() and (files / 'etc' / 'rancher').is_dir()
    # a second apply finds nothing and runs no command
    calls = len(fake.calls)
    assert work.scan() == after
    assert [c for c in fake.calls[calls:] if not c[0].endswith('-save')] == []


def test_without_keep_the_data_goes(fake, tmp_path):
    files = tmp_path / 'files'
    k3s_node(fake, files)
    cleanup_of(fake, files, keep=False).apply()
    assert not (files / 'data').exists()


def test_a_path_with_a_mount_below_is_refused(tmp_path):
    target = tmp_path / 'kubelet'
    (target / 'pods').mkdir(parents=True)
    with pytest.raises(kc.CleanupError) as exc:
        kc.remove_path(str(target), [{'point': str(target / 'pods')}])
    assert exc.value.msg == '%s is not removed: %s still mounted below it (unmount it first)' % (target, target / 'pods')
    assert (target / 'pods').is_dir()


def test_a_failing_umount_falls_back_to_lazy_and_reports(fake):
    fake.mount('1', '0', '0:1', '/', '/')
    fake.mount('2', '1', '0:2', '/', '/run/k3s/busy')

    def run(argv, data=None):
        fake.calls.append(argv)
        return 32, '', 'umount: /run/k3s/busy: target is busy.'
    fake.run = run
    with pytest.raises(kc.CleanupError) as exc:
        kc.Cleanup(fake.host(), DATA)._unmount()
    assert fake.calls == [['umount', '/run/k3s/busy'], ['umount', '-l', '/run/k3s/busy']]
    assert exc.value.msg == 'umount /run/k3s/busy failed (exit code 32): umount: /run/k3s/busy: target is busy.'


def test_a_failing_iptables_save_is_a_warning(fake):
    def run(argv, data=None):
        return (4, '', "can't initialize ip6tables table `filter'") if 'ip6tables' in argv[0] else (0, SAVE, '')
    fake.run = run
    work = kc.Cleanup(fake.host(), DATA)
    assert len(work.scan()["iptables"]) == 11  # no flannel network known: its uncommented rules stay
    assert work.warnings == ["/usr/sbin/ip6tables-save failed (exit code 4), its rules were not looked at: "
                             "can't initialize ip6tables table `filter'"]


def test_processes_that_survive_sigkill_are_named(fake):
    fake.process(1, 0, '/sbin/init', 'init')
    fake.process(10, 1, BIN + 'containerd-shim-runc-v2', 'containerd-shim')
    host = fake.host()
    host.kill = lambda pid, sig: None
    work = kc.Cleanup(host, DATA)
    with pytest.raises(kc.CleanupError) as exc:
        work._kill(timeout=0)
    assert exc.value.msg == ("k3s's processes still run 0 s after SIGKILL: 10 containerd-shim (%scontainerd-shim-runc-v2)"
                             % BIN)
