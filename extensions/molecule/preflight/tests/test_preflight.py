"""Verifier for the preflight scenario: the passing inventory, then each failing case.

Failing cases run the real playbook (preflight followed by a play that writes a
marker on every host) and check: non-zero exit, the right message, no host
changed, no marker anywhere.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'support'))
from ferry_run import molecule_hosts, molecule_inventory, run_playbook, write_inventory  # noqa: E402

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AFTER = os.path.join(SCENARIO, 'after_preflight.yml')
BASE_VARS = {'preflight_waive': ['br_netfilter'],
             'preflight_disk_required_mb': {'/var/lib/containerd': 256, '/opt/ferry': 128}}
MARKER = '/var/tmp/ferry-after-preflight'
GOOD_GROUPS = {'k3s_server': ['pf-server'], 'k3s_agent': ['pf-arm64', 'pf-kylin'],
               'standalone': ['pf-euler', 'pf-uos', 'pf-centos'], 'deploy': ['pf-server']}


def test_scenario_inventory_matches_the_cases():
    inventory = molecule_inventory()
    assert set(inventory['all']['hosts']) >= {'pf-server', 'pf-arm64', 'pf-kylin'}


@pytest.fixture(scope='module')
def hosts():
    return molecule_hosts()


@pytest.fixture(scope='module')
def good_run(tmp_path_factory, hosts):
    run = run_playbook(AFTER, write_inventory(tmp_path_factory.mktemp('good'), GOOD_GROUPS), BASE_VARS)
    reached = dict((name, host.file(MARKER).exists) for name, host in hosts.items())
    for host in hosts.values():
        host.run('rm -f %s' % MARKER)
    run.reached = reached
    return run


def test_good_inventory_passes_and_reaches_the_next_play(good_run):
    assert good_run.rc == 0, good_run.stdout[-3000:]
    report = good_run.report()
    assert report['failed'] is False
    assert report['failures'] == []
    assert any('br_netfilter' in line for line in report['waived'])
    assert good_run.reached == dict((name, True) for name in good_run.reached)


def test_report_has_one_row_per_host_and_every_check(good_run):
    report = good_run.report()
    assert sorted(report['rows']) == sorted(set(sum(GOOD_GROUPS.values(), [])))
    header = report['lines'][0]
    for check in ('python', 'arch', 'os', 'kernel', 'disk', 'ports', 'hostname', 'clock', 'inventory'):
        assert check in header


@pytest.mark.parametrize('name, arch, os_detail', [
    ('pf-server', 'x86_64', 'debian 12 (debian, supported)'),
    ('pf-arm64', 'aarch64', 'debian 12 (debian, supported)'),
    ('pf-kylin', 'x86_64', 'kylin V10 (redhat, emulated)'),
    ('pf-euler', 'x86_64', 'openeuler 22.03 (redhat, emulated)'),
    ('pf-uos', 'x86_64', 'uos 20 (debian, emulated)'),
    ('pf-centos', 'x86_64', 'centos 7 (redhat, emulated)'),
])
def test_arch_and_os_detected(good_run, name, arch, os_detail):
    row = good_run.report()['rows'][name]
    assert row['arch'] == {'status': 'ok', 'detail': arch}
    assert row['os'] == {'status': 'ok', 'detail': os_detail}


def assert_stopped_without_change(run, expected, hosts):
    assert run.rc != 0, 'preflight passed but should have failed'
    report = run.report()
    assert report['failed'] is True
    assert any(expected in line for line in report['failures']), report['failures']
    for name, stats in run.stats().items():
        assert stats['changed'] == 0, name
    for name, host in hosts.items():
        assert not host.file(MARKER).exists, 'the play after preflight ran on %s' % name


def test_duplicate_hostname_fails(tmp_path, hosts):
    groups = dict(GOOD_GROUPS, standalone=['pf-euler', 'pf-euler-again'])
    inventory = write_inventory(tmp_path, groups, {'pf-euler-again': {'ansible_host': 'pf-euler'}})
    run = run_playbook(AFTER, inventory, BASE_VARS)
    assert_stopped_without_change(run, "hostname 'pf-euler' also used by pf-euler-again", hosts)


def test_too_little_disk_fails(tmp_path, hosts):
    extra = dict(BASE_VARS, preflight_disk_required_mb={'/var/lib/containerd': 50000000, '/opt/ferry': 1})
    run = run_playbook(AFTER, write_inventory(tmp_path, GOOD_GROUPS), extra)
    assert_stopped_without_change(run, 'pf-server: disk: /var/lib/containerd+/opt/ferry needs 50000001 MB', hosts)


def test_unsupported_arch_fails(tmp_path, hosts):
    extra = dict(BASE_VARS, preflight_facts_override={'arch': 'ppc64le'})
    run = run_playbook(AFTER, write_inventory(tmp_path, GOOD_GROUPS), extra)
    assert_stopped_without_change(run, 'CPU architecture ppc64le is not supported', hosts)


@pytest.mark.parametrize('groups, expected', [
    ({'k3s_server': ['pf-server'], 'k3s_agent': ['pf-server', 'pf-arm64']},
     'pf-server is in both k3s_server and k3s_agent'),
    ({'k3s_server': ['pf-server', 'pf-kylin'], 'k3s_agent': ['pf-arm64']},
     'k3s_server has 2 hosts (pf-server, pf-kylin): embedded etcd needs an odd number of servers (1, 3, 5)'),
    ({'k3s_agent': ['pf-arm64']}, 'k3s_agent hosts (pf-arm64) but no host in k3s_server'),
])
def test_bad_groups_fail(tmp_path, hosts, groups, expected):
    run = run_playbook(AFTER, write_inventory(tmp_path, groups), BASE_VARS)
    assert_stopped_without_change(run, expected, hosts)
