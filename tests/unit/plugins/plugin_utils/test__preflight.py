# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight policy: evaluate() over realistic host facts, each check, and render()."""

import copy

import pytest

from ansible_collections.ferry.airgap.plugins.plugin_utils import _preflight
from ansible_collections.ferry.airgap.plugins.plugin_utils._preflight import CHECKS, evaluate, render

# The role's defaults (roles/preflight/defaults/main.yml), as the set_fact in gather.yml hands them over.
POLICY = {
    'waive': [],
    'arch_supported': ['x86_64', 'aarch64'],
    'arch_available': ['x86_64', 'aarch64'],
    'kernel_min': '3.10',
    'python_min': '3.8',
    'clock_skew_max_s': 5,
    'disk_required_mb': {'/var/lib/containerd': 2048, '/var/lib/rancher': 2048, '/opt/ferry': 1024},
    'requirements': {
        'k3s_server': {'cpu': 2, 'memory_mb': 1800},
        'k3s_agent': {'cpu': 1, 'memory_mb': 512},
        'standalone': {'cpu': 1, 'memory_mb': 1024},
        'deploy': {'cpu': 1, 'memory_mb': 512},
    },
    'ports': {
        'k3s_server': [{'port': 6443}, {'port': 10250}, {'port': 2379}, {'port': 2380},
                       {'port': 8472, 'proto': 'udp'}],
        'k3s_agent': [{'port': 10250}, {'port': 8472, 'proto': 'udp'}],
        'standalone': [],
        'deploy': [],
    },
    'port_owners_allowed': ['k3s', 'k3s-server', 'k3s-agent', 'containerd'],
    'facts_override': {},
}


def make_facts(hostname='node1', **changes):
    """ferry_host as host_facts + the action plugin return it for a healthy Kylin V10 aarch64 host."""
    facts = {
        'hostname': hostname,
        'arch': 'aarch64',
        'os': {'id': 'kylin', 'name': 'Kylin Linux Advanced Server', 'version': 'V10',
               'pretty_name': 'Kylin Linux Advanced Server V10 (Lance)', 'family': 'redhat',
               'treatment': 'emulated',
               'release_files': {'kylin-release': 'Kylin Linux Advanced Server release V10 (Lance)'}},
        'kernel': {'release': '4.19.90-24.4.v2101.ky10.aarch64', 'version': '4.19.90', 'overlay': 'loaded',
                   'br_netfilter': 'loadable', 'cgroup': 'v1', 'ip_forward': True},
        'selinux': {'current': 'disabled', 'configured': 'disabled'},
        'swap': {'total_mb': 0, 'devices': []},
        'memory_mb': 15889,
        'cpus': 8,
        'disks': [
            {'path': '/var/lib/containerd', 'existing': '/var/lib', 'device': 2049, 'free_mb': 40213,
             'total_mb': 102400},
            {'path': '/var/lib/rancher', 'existing': '/var/lib', 'device': 2049, 'free_mb': 40213,
             'total_mb': 102400},
            {'path': '/opt/ferry', 'existing': '/opt', 'device': 2050, 'free_mb': 9000, 'total_mb': 20480},
        ],
        'listeners': [{'proto': 'tcp', 'port': 22, 'process': 'sshd'},
                      {'proto': 'udp', 'port': 323, 'process': 'chronyd'}],
        'python': {'version': '3.9.9', 'executable': '/usr/bin/python3'},
        'systemd': True,
        'epoch': 1764000000.25,
        'clock': {'offset_s': 0.05, 'uncertainty_s': 0.01},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(facts.get(key), dict):
            facts[key] = dict(facts[key], **value)
        else:
            facts[key] = value
    return facts


def make_host(facts=None, policy=None, python='3.9.9', error=''):
    merged = copy.deepcopy(POLICY)
    merged.update(policy or {})
    return {'facts': facts, 'error': error, 'python': {'version': python, 'error': ''}, 'policy': merged}


def cluster(**overrides):
    """3 hosts: a k3s server, a k3s agent and a standalone host, all healthy."""
    hosts = {
        'srv1': make_host(make_facts('srv1')),
        'agt1': make_host(make_facts('agt1')),
        'app1': make_host(make_facts('app1')),
    }
    hosts.update(overrides)
    groups = {'all': sorted(hosts), 'ungrouped': [], 'deploy': [], 'k3s_server': ['srv1'],
              'k3s_agent': ['agt1'], 'standalone': ['app1']}
    return hosts, groups


def status(report, host, check):
    return report['rows'][host][check]['status']


def detail(report, host, check):
    return report['rows'][host][check]['detail']


# --------------------------------------------------------------------------- all ok

def test_all_ok_three_hosts():
    hosts, groups = cluster()
    report = evaluate(hosts, groups)
    assert report['failed'] is False
    assert report['failures'] == []
    assert report['warnings'] == []
    assert report['waived'] == []
    assert report['waivers'] == {}
    assert sorted(report['rows']) == ['agt1', 'app1', 'srv1']
    for name in ('srv1', 'agt1', 'app1'):
        assert set(report['rows'][name]) == set(CHECKS)
        assert dict((c, status(report, name, c)) for c in CHECKS) == dict((c, 'ok') for c in CHECKS)
    assert detail(report, 'srv1', 'inventory') == 'k3s_server'
    assert detail(report, 'srv1', 'os') == 'kylin V10 (redhat, emulated)'
    assert detail(report, 'srv1', 'arch') == 'aarch64'
    assert detail(report, 'srv1', 'ports') == '5 free'
    assert detail(report, 'agt1', 'ports') == '2 free'
    assert detail(report, 'srv1', 'disk') == '/var/lib/containerd+/var/lib/rancher 4096/40213 MB; /opt/ferry 1024/9000 MB'
    assert report['lines'][-1] == 'RESULT: PASS (3 hosts, 0 failed checks, 0 warnings, 0 waived)'


# --------------------------------------------------------------------------- python

def test_python_too_old_fails():
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), python='3.6.8'))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'python') == 'FAIL'
    assert report['failures'] == ['srv1: python: python 3.6.8 < 3.8 needed by this Ansible']


def test_python_missing_names_probe_error():
    host = make_host(make_facts('srv1'))
    host['python'] = {'version': '', 'error': '/bin/sh: python3: command not found'}
    hosts, groups = cluster(srv1=host)
    report = evaluate(hosts, groups)
    assert report['failures'] == ['srv1: python: no python3 found (/bin/sh: python3: command not found)']


# --------------------------------------------------------------------------- arch

def test_unsupported_arch_named():
    hosts, groups = cluster(agt1=make_host(make_facts('agt1', arch='ppc64le')))
    report = evaluate(hosts, groups)
    assert report['failed'] is True
    assert status(report, 'agt1', 'arch') == 'FAIL'
    assert status(report, 'srv1', 'arch') == 'ok'
    assert report['failures'] == ['agt1: arch: CPU architecture ppc64le is not supported (supported: x86_64, aarch64)']


def test_unsupported_arch_via_facts_override():
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy={'facts_override': {'arch': 'ppc64le'}}))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'arch') == 'FAIL'
    assert 'ppc64le' in detail(report, 'srv1', 'arch')


def test_bundle_lacks_host_arch():
    policy = {'arch_available': ['x86_64']}
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy=policy))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'arch') == 'FAIL'
    assert report['failures'] == ['srv1: arch: the bundle carries nothing for aarch64 (it has: x86_64)']


def test_bundle_with_no_arch_at_all():
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy={'arch_available': []}))
    report = evaluate(hosts, groups)
    assert detail(report, 'srv1', 'arch') == 'the bundle carries nothing for aarch64 (it has: none)'


# --------------------------------------------------------------------------- os

def test_unknown_os_warns_not_silent():
    unknown = {'id': 'acme', 'name': 'Acme', 'version': '3', 'pretty_name': 'Acme Linux 3', 'family': 'debian',
               'treatment': 'unknown', 'release_files': {}}
    hosts, groups = cluster(app1=make_host(make_facts('app1', os=unknown)))
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'os') == 'WARN'
    assert report['warnings'] == ["app1: os: unknown OS 'Acme Linux 3': treated as debian family"]
    assert report['failed'] is False
    assert 'WARNINGS:' in report['lines']
    assert report['lines'][-1] == 'RESULT: PASS (3 hosts, 0 failed checks, 1 warnings, 0 waived)'


# --------------------------------------------------------------------------- kernel

def test_kernel_too_old():
    kernel = {'release': '3.8.13-118.el6uek.x86_64', 'version': '3.8.13'}
    hosts, groups = cluster(app1=make_host(make_facts('app1', kernel=kernel)))
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'kernel') == 'FAIL'
    assert report['failures'] == ['app1: kernel: kernel 3.8.13-118.el6uek.x86_64 < 3.10']


def test_kernel_exactly_minimum_passes():
    kernel = {'release': '3.10.0-1160.el7.x86_64', 'version': '3.10.0'}
    hosts, groups = cluster(app1=make_host(make_facts('app1', kernel=kernel)))
    assert status(evaluate(hosts, groups), 'app1', 'kernel') == 'ok'


def test_br_netfilter_missing_fails_on_k3s_not_standalone():
    kernel = {'br_netfilter': 'missing'}
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', kernel=kernel)),
                            agt1=make_host(make_facts('agt1', kernel=kernel)),
                            app1=make_host(make_facts('app1', kernel=kernel)))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'kernel') == 'FAIL'
    assert status(report, 'agt1', 'kernel') == 'FAIL'
    assert status(report, 'app1', 'kernel') == 'ok'
    assert report['failures'] == [
        'agt1: kernel: br_netfilter module unavailable (needed by k3s)',
        'srv1: kernel: br_netfilter module unavailable (needed by k3s)',
    ]


def test_waive_br_netfilter():
    kernel = {'br_netfilter': 'missing'}
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', kernel=kernel), policy={'waive': ['br_netfilter']}))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'kernel') == 'waived'
    assert report['waived'] == ['srv1: kernel: br_netfilter module unavailable (needed by k3s)']
    assert report['waivers'] == {'srv1': ['br_netfilter']}
    assert report['failures'] == []
    assert report['failed'] is False
    assert 'WAIVERS SET: srv1: br_netfilter' in report['lines']
    assert report['lines'][-1] == 'RESULT: PASS (3 hosts, 0 failed checks, 0 warnings, 1 waived)'


def test_waiving_one_feature_does_not_waive_another():
    kernel = {'br_netfilter': 'missing', 'overlay': 'missing'}
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', kernel=kernel), policy={'waive': ['br_netfilter']}))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'kernel') == 'FAIL'
    assert report['failures'] == ['srv1: kernel: overlay filesystem unavailable; '
                                  'br_netfilter module unavailable (needed by k3s)']


def test_waive_whole_kernel_column():
    kernel = {'release': '3.8.13', 'version': '3.8.13', 'cgroup': 'none'}
    hosts, groups = cluster(app1=make_host(make_facts('app1', kernel=kernel), policy={'waive': ['kernel']}))
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'kernel') == 'waived'
    assert report['failed'] is False
    assert report['waived'] == ['app1: kernel: kernel 3.8.13 < 3.10; no cgroup hierarchy mounted']


def test_ip_forward_off_is_only_noted():
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', kernel={'ip_forward': False})))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'kernel') == 'ok'
    assert detail(report, 'srv1', 'kernel') == '4.19.90; cgroup v1, ip_forward off (set at install)'


# --------------------------------------------------------------------------- swap / selinux

def test_swap_warns_on_k3s_only():
    swap = {'total_mb': 2047, 'devices': ['/dev/dm-1']}
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', swap=swap)), app1=make_host(make_facts('app1', swap=swap)))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'swap') == 'WARN'
    assert status(report, 'app1', 'swap') == 'ok'
    assert detail(report, 'app1', 'swap') == '2047 MB'
    assert report['warnings'] == ['srv1: swap: swap on (2047 MB): kubelet expects it off']


def test_selinux_enforcing_warns_on_standalone_hosts():
    hosts, groups = cluster(app1=make_host(make_facts('app1', selinux={'current': 'enforcing'})))
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'selinux') == 'WARN'
    assert report['warnings'] == ['app1: selinux: SELinux enforcing: container policies must come with the bundle']


# what the verified bundle carries per arch (ferry_bundle.arch_artifacts), handed over by install.yml
WITH_POLICY = {'x86_64': ['k3s'], 'aarch64': ['container-selinux-el8', 'k3s', 'k3s-selinux-el8']}
NO_POLICY = {'x86_64': ['k3s'], 'aarch64': ['k3s']}
POLICY_FAIL = ('SELinux is enforcing on this k3s host (kylin V10, redhat family, el8) and the bundle carries no '
               'SELinux policy for el8 on aarch64 (expected artifacts container-selinux-el8 and k3s-selinux-el8 for '
               'aarch64 or noarch; missing: %s): add them to the bundle spec (docs/install.md, SELinux), or set '
               'SELinux permissive')


def enforcing_k3s(bundle_artifacts, waive=(), **facts):
    policy = {'bundle_artifacts': bundle_artifacts, 'waive': list(waive),
              'selinux_policy_packages': ['container-selinux', 'k3s-selinux']}
    return cluster(
        srv1=make_host(make_facts('srv1', selinux={'current': 'enforcing'}, **facts), policy=policy),
        agt1=make_host(make_facts('agt1', selinux={'current': 'enforcing'}, **facts), policy=policy))


def test_selinux_enforcing_k3s_host_without_policy_in_the_bundle_fails():
    hosts, groups = enforcing_k3s(NO_POLICY)
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'selinux') == 'FAIL'
    assert status(report, 'agt1', 'selinux') == 'FAIL'
    message = POLICY_FAIL % 'container-selinux-el8, k3s-selinux-el8'
    assert report['failures'] == ['agt1: selinux: ' + message, 'srv1: selinux: ' + message]
    assert report['failed'] is True


def test_selinux_policy_half_there_names_the_missing_one():
    hosts, groups = enforcing_k3s({'aarch64': ['k3s', 'k3s-selinux-el8']})
    report = evaluate(hosts, groups)
    assert detail(report, 'srv1', 'selinux') == POLICY_FAIL % 'container-selinux-el8'


def test_selinux_policy_for_another_arch_does_not_count():
    hosts, groups = enforcing_k3s(WITH_POLICY, arch='x86_64')
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'selinux') == 'FAIL'
    assert 'for el8 on x86_64' in detail(report, 'srv1', 'selinux')


def test_selinux_enforcing_k3s_host_with_policy_in_the_bundle_passes():
    hosts, groups = enforcing_k3s(WITH_POLICY)
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'selinux') == 'ok'
    assert detail(report, 'srv1', 'selinux') == 'enforcing; policy from the bundle: container-selinux-el8, k3s-selinux-el8'
    assert report['failed'] is False


def test_selinux_policy_follows_the_el_release_of_the_host():
    centos7 = {'id': 'centos', 'name': 'CentOS Linux', 'version': '7', 'pretty_name': 'CentOS Linux 7 (Core)',
               'family': 'redhat', 'treatment': 'emulated', 'release_files': {}}
    hosts, groups = enforcing_k3s(WITH_POLICY, os=centos7)
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'selinux') == 'FAIL'
    assert 'expected artifacts container-selinux-el7 and k3s-selinux-el7' in detail(report, 'srv1', 'selinux')
    hosts, groups = enforcing_k3s({'aarch64': ['container-selinux-el7', 'k3s-selinux-el7']}, os=centos7)
    assert status(evaluate(hosts, groups), 'srv1', 'selinux') == 'ok'


@pytest.mark.parametrize('current', ['permissive', 'disabled'])
def test_selinux_not_enforcing_needs_no_policy(current):
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', selinux={'current': current}),
                                           policy={'bundle_artifacts': NO_POLICY}))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'selinux') == 'ok'
    assert detail(report, 'srv1', 'selinux') == current


def test_selinux_missing_policy_can_be_waived():
    hosts, groups = enforcing_k3s(NO_POLICY, waive=['selinux'])
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'selinux') == 'waived'
    assert report['failed'] is False
    assert 'srv1: selinux: ' + POLICY_FAIL % 'container-selinux-el8, k3s-selinux-el8' in report['waived']


def test_selinux_without_a_known_bundle_only_warns_on_k3s_hosts():
    hosts, groups = enforcing_k3s(None)
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'selinux') == 'WARN'
    assert detail(report, 'srv1', 'selinux') == (
        'SELinux is enforcing on this k3s host (kylin V10, redhat family, el8): it needs the artifacts '
        'container-selinux-el8 and k3s-selinux-el8 for aarch64 in the bundle; install.yml checks them')


def test_selinux_enforcing_k3s_host_outside_the_el_family_fails():
    debian = {'id': 'debian', 'name': 'Debian GNU/Linux', 'version': '12', 'pretty_name': 'Debian GNU/Linux 12',
              'family': 'debian', 'treatment': 'supported', 'release_files': {}}
    hosts, groups = enforcing_k3s(WITH_POLICY, os=debian)
    report = evaluate(hosts, groups)
    assert detail(report, 'srv1', 'selinux') == (
        'SELinux is enforcing on this k3s host (debian 12, debian family) and Ferry carries SELinux policy RPMs '
        'for EL releases only (el7, el8, el9): set SELinux permissive, or waive selinux')


# --------------------------------------------------------------------------- disk

def test_disk_paths_on_one_device_add_up():
    # each of containerd (2048) and rancher (2048) alone fits in 3000 MB; together (4096) they do not
    disks = [
        {'path': '/var/lib/containerd', 'existing': '/', 'device': 64768, 'free_mb': 3000, 'total_mb': 8000},
        {'path': '/var/lib/rancher', 'existing': '/', 'device': 64768, 'free_mb': 3000, 'total_mb': 8000},
        {'path': '/opt/ferry', 'existing': '/opt', 'device': 64769, 'free_mb': 5000, 'total_mb': 8000},
    ]
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', disks=disks)))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'disk') == 'FAIL'
    assert report['failures'] == ['srv1: disk: /var/lib/containerd+/var/lib/rancher needs 4096 MB, 3000 MB free']


def test_disk_same_paths_on_separate_devices_fit():
    disks = [
        {'path': '/var/lib/containerd', 'existing': '/var/lib/containerd', 'device': 1, 'free_mb': 3000,
         'total_mb': 8000},
        {'path': '/var/lib/rancher', 'existing': '/var/lib/rancher', 'device': 2, 'free_mb': 3000,
         'total_mb': 8000},
    ]
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', disks=disks)))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'disk') == 'ok'
    assert detail(report, 'srv1', 'disk') == '/var/lib/containerd 2048/3000 MB; /var/lib/rancher 2048/3000 MB'


def test_disk_exactly_enough_passes():
    disks = [{'path': '/opt/ferry', 'existing': '/', 'device': 7, 'free_mb': 1024, 'total_mb': 2048}]
    hosts, groups = cluster(app1=make_host(make_facts('app1', disks=disks)))
    assert status(evaluate(hosts, groups), 'app1', 'disk') == 'ok'


# --------------------------------------------------------------------------- memory / cpu

def test_memory_and_cpu_per_role():
    small = {'memory_mb': 1500, 'cpus': 1}
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', **small)),
                            agt1=make_host(make_facts('agt1', **small)),
                            app1=make_host(make_facts('app1', **small)))
    report = evaluate(hosts, groups)
    # server needs 2 CPUs / 1800 MB; agent and standalone fit in 1 CPU / 1500 MB
    assert status(report, 'srv1', 'memory') == 'FAIL'
    assert status(report, 'srv1', 'cpu') == 'FAIL'
    assert detail(report, 'srv1', 'memory') == '1500MB < 1800MB needed for k3s_server'
    assert detail(report, 'srv1', 'cpu') == '1 < 2 needed for k3s_server'
    for name in ('agt1', 'app1'):
        assert status(report, name, 'memory') == 'ok'
        assert status(report, name, 'cpu') == 'ok'
    assert detail(report, 'app1', 'memory') == '1500MB'


def test_requirement_is_max_over_roles():
    # app1 is standalone (1024 MB) and deploy (512 MB) -> needs 1024 MB
    hosts, groups = cluster(app1=make_host(make_facts('app1', memory_mb=900)))
    groups['deploy'] = ['app1']
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'memory') == 'FAIL'
    assert detail(report, 'app1', 'memory') == '900MB < 1024MB needed for deploy/standalone'
    assert detail(report, 'app1', 'inventory') == 'deploy,standalone'


def test_merge_requirement_max():
    policy = {'requirements': {'a': {'cpu': 1}, 'b': {'cpu': 4}, 'c': {}}}
    assert _preflight._merge_requirement(policy, 'cpu', ['a', 'b', 'c']) == 4
    assert _preflight._merge_requirement(policy, 'cpu', []) == 0


# --------------------------------------------------------------------------- ports

def test_busy_port_by_nginx_fails():
    listeners = [{'proto': 'tcp', 'port': 22, 'process': 'sshd'}, {'proto': 'tcp', 'port': 6443, 'process': 'nginx'}]
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', listeners=listeners)))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'ports') == 'FAIL'
    assert report['failures'] == ['srv1: ports: tcp/6443 in use by nginx']


def test_same_port_held_by_k3s_passes():
    listeners = [{'proto': 'tcp', 'port': 6443, 'process': 'k3s'}, {'proto': 'tcp', 'port': 10250, 'process': 'k3s'}]
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', listeners=listeners)))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'ports') == 'ok'
    assert report['failed'] is False


def test_port_owner_unknown_and_protocol_matters():
    listeners = [{'proto': 'tcp', 'port': 10250, 'process': ''},
                 {'proto': 'udp', 'port': 6443, 'process': 'nginx'},      # udp 6443 is not wanted
                 {'proto': 'tcp', 'port': 2380, 'process': 'etcd'}]
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', listeners=listeners)),
                            app1=make_host(make_facts('app1', listeners=listeners)))
    report = evaluate(hosts, groups)
    assert detail(report, 'srv1', 'ports') == ('tcp/10250 in use by a process not visible (kernel socket?), '
                                               'tcp/2380 in use by etcd')
    assert status(report, 'srv1', 'ports') == 'FAIL'
    assert status(report, 'app1', 'ports') == 'ok'  # standalone wants no ports


def test_port_held_by_an_invisible_owner_only_warns():
    # flannel's VXLAN socket on udp/8472 belongs to the kernel: no process owns it
    listeners = [{'proto': 'udp', 'port': 8472, 'process': ''}]
    hosts, groups = cluster(agt1=make_host(make_facts('agt1', listeners=listeners)))
    report = evaluate(hosts, groups)
    assert status(report, 'agt1', 'ports') == 'WARN'
    assert report['warnings'] == ['agt1: ports: udp/8472 in use by a process not visible (kernel socket?)']
    assert report['failed'] is False


# --------------------------------------------------------------------------- hostnames

def test_duplicate_hostnames_fail_naming_other_host():
    hosts, groups = cluster(srv1=make_host(make_facts('node')), agt1=make_host(make_facts('node')))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'hostname') == 'FAIL'
    assert status(report, 'agt1', 'hostname') == 'FAIL'
    assert status(report, 'app1', 'hostname') == 'ok'
    assert detail(report, 'srv1', 'hostname') == "hostname 'node' also used by agt1"
    assert detail(report, 'agt1', 'hostname') == "hostname 'node' also used by srv1"


@pytest.mark.parametrize('bad', ['Node1', 'node_1', 'node1.', '-node'])
def test_invalid_node_name_fails_on_k3s_host_only(bad):
    hosts, groups = cluster(agt1=make_host(make_facts(bad)), app1=make_host(make_facts(bad + 'x')))
    report = evaluate(hosts, groups)
    assert status(report, 'agt1', 'hostname') == 'FAIL'
    assert detail(report, 'agt1', 'hostname') == 'hostname %r is not a valid Kubernetes node name' % bad
    assert status(report, 'app1', 'hostname') == 'ok'  # standalone host: no node name rules


def test_valid_fqdn_node_name():
    hosts, groups = cluster(srv1=make_host(make_facts('k3s-01.site.example')))
    assert status(evaluate(hosts, groups), 'srv1', 'hostname') == 'ok'


# --------------------------------------------------------------------------- clocks

def test_clock_skew_fails_only_skewed_host():
    hosts, groups = cluster(srv1=make_host(make_facts('srv1', clock={'offset_s': 0.2, 'uncertainty_s': 0.01})),
                            agt1=make_host(make_facts('agt1', clock={'offset_s': -0.3, 'uncertainty_s': 0.01})),
                            app1=make_host(make_facts('app1', clock={'offset_s': 42.0, 'uncertainty_s': 0.01})))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'clock') == 'ok'
    assert status(report, 'agt1', 'clock') == 'ok'
    assert status(report, 'app1', 'clock') == 'FAIL'
    assert report['failures'] == ['app1: clock: clock +41.8 s from the others (max 5 s)']


def test_clock_skew_two_hosts_blames_the_skewed_one():
    # srv1 agrees with the controller; app1 is 10 s ahead of both
    hosts = {'srv1': make_host(make_facts('srv1', clock={'offset_s': 0.0, 'uncertainty_s': 0.01})),
             'app1': make_host(make_facts('app1', clock={'offset_s': 10.0, 'uncertainty_s': 0.01}))}
    groups = {'k3s_server': ['srv1'], 'standalone': ['app1']}
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'clock') == 'FAIL'


def test_clock_offset_within_its_measurement_uncertainty_passes():
    # a slow host (qemu, load) read its clock late: +9.4 s, but measured within +-6 s -> at worst 3.4 s off
    hosts, groups = cluster(app1=make_host(make_facts('app1', clock={'offset_s': 9.45, 'uncertainty_s': 6.0})))
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'clock') == 'ok'
    assert detail(report, 'app1', 'clock') == '+9.4 s +-6.0 s'
    # beyond the limit even at the favourable end of the interval: still a failure, which says so
    hosts, groups = cluster(app1=make_host(make_facts('app1', clock={'offset_s': 30.05, 'uncertainty_s': 6.0})))
    report = evaluate(hosts, groups)
    assert report['failures'] == ['app1: clock: clock +30.0 s from the others (max 5 s, measured within +-6.0 s)']


def test_clock_missing_is_skipped():
    facts = make_facts('app1')
    del facts['clock']
    hosts, groups = cluster(app1=make_host(facts))
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'clock') == '-'
    assert status(report, 'srv1', 'clock') == 'ok'


# --------------------------------------------------------------------------- inventory

def test_host_in_server_and_agent():
    hosts, groups = cluster()
    groups['k3s_agent'] = ['agt1', 'srv1']
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'inventory') == 'FAIL'
    assert detail(report, 'srv1', 'inventory') == 'srv1 is in both k3s_server and k3s_agent'
    assert 'srv1: inventory: srv1 is in both k3s_server and k3s_agent' in report['failures']
    assert status(report, 'agt1', 'inventory') == 'ok'


def test_host_in_standalone_and_k3s():
    hosts, groups = cluster()
    groups['standalone'] = ['app1', 'agt1']
    report = evaluate(hosts, groups)
    assert detail(report, 'agt1', 'inventory') == 'agt1 is in both standalone and k3s_agent'


EVEN = ('k3s_server has 2 hosts (srv1, srv2): embedded etcd needs an odd number of servers (1, 3, 5) to keep its '
        'quorum; add or remove a server, or waive k3s_even_servers')


def two_servers(waive=(), srv1_policy=None):
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy=dict(srv1_policy or {}, waive=list(waive))),
                            srv2=make_host(make_facts('srv2'), policy={'waive': list(waive)}))
    groups['k3s_server'] = ['srv1', 'srv2']
    return hosts, groups


def test_two_servers_fail_each_server_naming_them_and_odd():
    hosts, groups = two_servers()
    report = evaluate(hosts, groups)
    assert report['failed'] is True
    assert report['failures'] == ['srv1: inventory: ' + EVEN, 'srv2: inventory: ' + EVEN]
    assert status(report, 'srv1', 'inventory') == 'FAIL'
    assert status(report, 'srv2', 'inventory') == 'FAIL'
    assert status(report, 'agt1', 'inventory') == 'ok'  # the agent and the standalone host are not to blame
    assert status(report, 'app1', 'inventory') == 'ok'
    assert report['lines'][-1] == 'RESULT: STOP (4 hosts, 2 failed checks, 0 warnings, 0 waived)'


def test_two_servers_waived_are_shown_as_waived():
    hosts, groups = two_servers(waive=['k3s_even_servers'])
    report = evaluate(hosts, groups)
    assert report['failed'] is False
    assert report['failures'] == []
    assert status(report, 'srv1', 'inventory') == 'waived'
    assert status(report, 'srv2', 'inventory') == 'waived'
    assert report['waived'] == ['srv1: inventory: ' + EVEN, 'srv2: inventory: ' + EVEN]
    assert report['waivers'] == {'srv1': ['k3s_even_servers'], 'srv2': ['k3s_even_servers']}
    assert report['lines'][-1] == 'RESULT: PASS (4 hosts, 0 failed checks, 0 warnings, 2 waived)'


def test_even_servers_waiver_is_per_host():
    # waived on srv1 only: srv2 still stops the run
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy={'waive': ['k3s_even_servers']}),
                            srv2=make_host(make_facts('srv2')))
    groups['k3s_server'] = ['srv1', 'srv2']
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'inventory') == 'waived'
    assert report['failures'] == ['srv2: inventory: ' + EVEN]


def test_even_servers_waiver_does_not_waive_other_inventory_mistakes():
    hosts, groups = two_servers(waive=['k3s_even_servers'])
    groups['k3s_agent'] = ['agt1', 'srv1']
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'inventory') == 'FAIL'
    assert report['failures'] == ['srv1: inventory: srv1 is in both k3s_server and k3s_agent; ' + EVEN]
    assert status(report, 'srv2', 'inventory') == 'waived'
    # nor the inventory-wide ones
    hosts = {'agt1': make_host(make_facts('agt1'), policy={'waive': ['k3s_even_servers']})}
    report = evaluate(hosts, {'k3s_agent': ['agt1']})
    assert report['failures'] == ['inventory: k3s_agent hosts (agt1) but no host in k3s_server',
                                  'inventory: no host in k3s_server or standalone: nothing to run the application']


def test_waiving_the_inventory_column_waives_even_servers_too():
    hosts, groups = two_servers(waive=['inventory'])
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'inventory') == 'waived'
    assert report['failed'] is False


@pytest.mark.parametrize('count', [1, 3, 5])
def test_odd_number_of_servers_ok(count):
    names = ['srv%d' % i for i in range(1, count + 1)]
    hosts, groups = cluster(**dict((name, make_host(make_facts(name))) for name in names))
    groups['k3s_server'] = names
    report = evaluate(hosts, groups)
    assert report['failures'] == []
    assert [status(report, name, 'inventory') for name in names] == ['ok'] * count


def test_agents_without_servers():
    hosts = {'agt1': make_host(make_facts('agt1')), 'app1': make_host(make_facts('app1'))}
    groups = {'k3s_server': [], 'k3s_agent': ['agt1'], 'standalone': ['app1']}
    report = evaluate(hosts, groups)
    assert report['failures'] == ['inventory: k3s_agent hosts (agt1) but no host in k3s_server']


def test_no_server_and_no_standalone():
    hosts = {'dep1': make_host(make_facts('dep1'))}
    groups = {'deploy': ['dep1']}
    report = evaluate(hosts, groups)
    assert report['failures'] == ['inventory: no host in k3s_server or standalone: nothing to run the application']
    assert report['lines'][-1].startswith('RESULT: STOP')


def test_standalone_only_inventory_passes():
    hosts = {'app1': make_host(make_facts('app1'))}
    groups = {'all': ['app1'], 'standalone': ['app1']}
    report = evaluate(hosts, groups)
    assert report['failed'] is False
    assert report['failures'] == []
    assert report['warnings'] == []
    assert report['lines'][-1] == 'RESULT: PASS (1 hosts, 0 failed checks, 0 warnings, 0 waived)'


def test_host_in_no_ferry_group_warns():
    hosts, groups = cluster(misc=make_host(make_facts('misc')))
    groups['monitoring'] = ['misc']
    report = evaluate(hosts, groups)
    assert status(report, 'misc', 'inventory') == 'WARN'
    assert report['warnings'] == ['misc: inventory: misc is in none of deploy, k3s_server, k3s_agent, standalone']
    assert report['failed'] is False


# --------------------------------------------------------------------------- host that did not report

def test_host_that_did_not_report():
    silent = {'facts': None, 'python': None, 'error': 'host did not report (unreachable?)', 'policy': {}}
    hosts, groups = cluster(agt1=silent)
    report = evaluate(hosts, groups)
    row = report['rows']['agt1']
    assert row['python']['status'] == 'FAIL'
    assert row['python']['detail'] == 'no python3 found (probe failed)'
    for check in CHECKS[1:-1]:
        assert row[check] == {'status': '-', 'detail': 'host did not report (unreachable?)'}
    assert row['inventory']['status'] == 'ok'
    assert report['failures'] == ['agt1: python: no python3 found (probe failed)']
    assert report['failed'] is True
    # the others are still checked (and the silent host does not break hostname/clock checks)
    assert status(report, 'srv1', 'hostname') == 'ok'
    assert status(report, 'srv1', 'clock') == 'ok'


def test_host_with_python_but_no_facts_fails():
    # gather.yml: the probe succeeded (python version set) but host_facts failed (failed_when: false),
    # so ferry_host is undefined -> facts None, error = the module's msg.
    broken = make_host(None, python='3.9.9', error='MODULE FAILURE: Traceback ...')
    hosts, groups = cluster(agt1=broken)
    report = evaluate(hosts, groups)
    assert report['failed'] is True
    assert any(line.startswith('agt1: ') and 'MODULE FAILURE' in line for line in report['failures'])


def test_evaluate_applies_facts_override_shallowly():
    hosts, groups = cluster(app1=make_host(make_facts('app1'), policy={'facts_override': {'memory_mb': 100}}))
    report = evaluate(hosts, groups)
    assert detail(report, 'app1', 'memory') == '100MB < 1024MB needed for standalone'


# --------------------------------------------------------------------------- render

def test_render_pass_table():
    hosts, groups = cluster()
    report = evaluate(hosts, groups)
    lines = render(report)
    assert lines == report['lines']
    header = lines[0]
    assert header.startswith('host | ')
    cells = [cell.strip() for cell in header.split('|')]
    assert cells == ['host'] + list(CHECKS)
    assert lines[1] == '-' * len(header)
    rows = lines[2:5]
    assert [row.split('|')[0].strip() for row in rows] == ['agt1', 'app1', 'srv1']
    for row in rows:
        assert [cell.strip() for cell in row.split('|')[1:]] == ['ok'] * len(CHECKS)
        assert len(row.rstrip()) <= len(header)
    assert lines[5:] == ['RESULT: PASS (3 hosts, 0 failed checks, 0 warnings, 0 waived)']


def test_render_stop_with_sections():
    long_name = 'a-very-long-inventory-name'
    hosts, groups = cluster()
    hosts[long_name] = make_host(make_facts(long_name, arch='ppc64le', selinux={'current': 'enforcing'}))
    groups['standalone'].append(long_name)
    report = evaluate(hosts, groups)
    lines = report['lines']
    assert lines[0].startswith('host'.ljust(len(long_name)) + ' | python')
    row = [line for line in lines if line.startswith(long_name + ' |')]
    assert len(row) == 1
    assert [cell.strip() for cell in row[0].split('|')][1:4] == ['ok', 'FAIL', 'ok']
    assert 'FAILED:' in lines
    assert '  %s: arch: CPU architecture ppc64le is not supported (supported: x86_64, aarch64)' % long_name in lines
    assert 'WARNINGS:' in lines
    assert lines.index('FAILED:') < lines.index('WARNINGS:')
    assert lines[-1] == 'RESULT: STOP (4 hosts, 1 failed checks, 1 warnings, 0 waived)'


def test_render_minimal_report():
    report = {'rows': {}, 'failures': [], 'warnings': [], 'waived': [], 'waivers': {}, 'failed': False}
    lines = render(report)
    assert len(lines) == 3
    assert lines[-1] == 'RESULT: PASS (0 hosts, 0 failed checks, 0 warnings, 0 waived)'


@pytest.mark.parametrize('text, expected', [('3.10', (3, 10)), ('3.10.0', (3, 10, 0)), ('Python 3.9.16+', (3, 9, 16)),
                                            ('4.19.90', (4, 19, 90)), ('', ())])
def test_version_tuple(text, expected):
    assert _preflight.version_tuple(text) == expected


# --------------------------------------------------------------------------- runtime (layer compressions)

ZSTD_BUNDLE = {'linux/amd64': ['gzip', 'zstd'], 'linux/arm64': ['gzip', 'zstd']}


def runtime_policy(versions, name='containerd', layers=None):
    """The same runtime for every site group."""
    return {'layer_compressions': ZSTD_BUNDLE if layers is None else layers,
            'runtime': dict((group, {'name': name, 'versions': versions}) for group in _preflight.SITE_GROUPS)}


def test_runtime_ok_when_the_bundled_containerd_reads_zstd():
    policy = runtime_policy({'x86_64': '1.6.20', 'aarch64': '1.7.18'})
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy), agt1=make_host(make_facts('agt1'), policy))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'runtime') == 'ok'
    assert detail(report, 'srv1', 'runtime') == 'containerd 1.7.18 reads gzip, zstd'
    assert report['failed'] is False


def test_runtime_refuses_zstd_for_an_old_containerd_naming_the_host():
    # the aarch64 containerd the bundle carries is 1.4: it cannot read zstd layers
    policy = runtime_policy({'x86_64': '1.6.20', 'aarch64': '1.4.13'})
    hosts, groups = cluster(agt1=make_host(make_facts('agt1'), policy),
                            app1=make_host(make_facts('app1', arch='x86_64'), policy))
    report = evaluate(hosts, groups)
    assert report['failed'] is True
    assert status(report, 'agt1', 'runtime') == 'FAIL'
    assert status(report, 'app1', 'runtime') == 'ok'  # its containerd is 1.6.20
    assert report['failures'] == [
        "agt1: runtime: zstd image layers need containerd >= 1.5; this host would run containerd 1.4.13 "
        "(the bundle's, aarch64): build the bundle with images_compression: gzip, or carry a newer containerd"]


def test_runtime_refuses_zstd_for_k3s_before_1_22():
    policy = runtime_policy({'aarch64': 'v1.21.8+k3s1'}, name='k3s')
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'runtime') == 'FAIL'
    assert 'need k3s >= 1.22; this host would run k3s v1.21.8+k3s1' in detail(report, 'srv1', 'runtime')
    policy = runtime_policy({'aarch64': 'v1.22.5+k3s1'}, name='k3s')
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy))
    assert status(evaluate(hosts, groups), 'srv1', 'runtime') == 'ok'


def test_runtime_refuses_zstd_when_the_bundle_gives_no_version():
    hosts, groups = cluster(app1=make_host(make_facts('app1'), runtime_policy({'x86_64': '1.6.20'})))
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'runtime') == 'FAIL'
    assert detail(report, 'app1', 'runtime') == (
        'zstd image layers need containerd >= 1.5, and the bundle does not say which containerd it carries for '
        'aarch64 (give that artifact a version in the spec)')


def test_runtime_refuses_zstd_for_a_runtime_it_does_not_know():
    hosts, groups = cluster(app1=make_host(make_facts('app1'), runtime_policy({'aarch64': '2.0'}, name='crio')))
    assert detail(evaluate(hosts, groups), 'app1', 'runtime') == (
        'zstd image layers: Ferry does not know whether crio reads them')


def test_runtime_gzip_and_plain_layers_need_no_version():
    policy = runtime_policy({}, layers={'linux/arm64': ['gzip', 'none']})
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'runtime') == 'ok'
    assert detail(report, 'srv1', 'runtime') == 'layers: gzip, none'


def test_runtime_looks_at_the_hosts_platform_only():
    # zstd only in the amd64 images; the aarch64 host with an old containerd loads none of them
    policy = runtime_policy({'aarch64': '1.4.13'}, layers={'linux/amd64': ['zstd'], 'linux/arm64': ['gzip']})
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy))
    assert status(evaluate(hosts, groups), 'srv1', 'runtime') == 'ok'


def test_runtime_deploy_only_host_loads_nothing():
    policy = runtime_policy({})
    hosts, groups = cluster(dep1=make_host(make_facts('dep1'), policy))
    groups['deploy'] = ['dep1']
    report = evaluate(hosts, groups)
    assert status(report, 'dep1', 'runtime') == 'ok'
    assert detail(report, 'dep1', 'runtime') == 'loads no images'


def test_runtime_can_be_waived_and_is_reported():
    policy = dict(runtime_policy({'aarch64': '1.4.13'}), waive=['runtime'])
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy))
    report = evaluate(hosts, groups)
    assert status(report, 'srv1', 'runtime') == 'waived'
    assert report['failed'] is False
    assert any('srv1: runtime: zstd image layers need containerd >= 1.5' in line for line in report['waived'])


def test_runtime_per_group_k3s_embedded_and_standalone_containerd():
    # install.yml's policy: standalone hosts run the bundle's containerd, k3s hosts k3s's embedded one
    policy = {'layer_compressions': ZSTD_BUNDLE, 'runtime': {
        'standalone': {'name': 'containerd', 'versions': {'aarch64': '1.7.18'}},
        'k3s_server': {'name': 'k3s', 'versions': {'aarch64': 'v1.21.8+k3s1'}},
        'k3s_agent': {'name': 'k3s', 'versions': {'aarch64': 'v1.21.8+k3s1'}}}}
    hosts, groups = cluster(srv1=make_host(make_facts('srv1'), policy), agt1=make_host(make_facts('agt1'), policy),
                            app1=make_host(make_facts('app1'), policy))
    report = evaluate(hosts, groups)
    assert status(report, 'app1', 'runtime') == 'ok'
    assert detail(report, 'app1', 'runtime') == 'containerd 1.7.18 reads gzip, zstd'
    for name in ('srv1', 'agt1'):
        assert detail(report, name, 'runtime') == (
            "zstd image layers need k3s >= 1.22; this host would run k3s v1.21.8+k3s1 (the bundle's, aarch64): "
            "build the bundle with images_compression: gzip, or carry a newer k3s")
