# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight_report filter on plain dicts, as hostvars/groups would give them."""

from collections import OrderedDict

from ansible_collections.ferry.airgap.plugins.filter.preflight_report import FilterModule, _plain, preflight_report
from ansible_collections.ferry.airgap.plugins.plugin_utils._preflight import CHECKS

POLICY = {
    'waive': [],
    'arch_supported': ['x86_64', 'aarch64'],
    'arch_available': ['x86_64', 'aarch64'],
    'kernel_min': '3.10',
    'python_min': '3.8',
    'clock_skew_max_s': 5,
    'disk_required_mb': {'/opt/ferry': 1024},
    'requirements': {'standalone': {'cpu': 1, 'memory_mb': 1024}, 'k3s_server': {'cpu': 2, 'memory_mb': 1800}},
    'ports': {'k3s_server': [{'port': 6443}], 'standalone': []},
    'port_owners_allowed': ['k3s'],
    'facts_override': {},
}


def facts(hostname):
    return {
        'hostname': hostname,
        'arch': 'x86_64',
        'os': {'id': 'debian', 'name': 'Debian GNU/Linux', 'version': '12',
               'pretty_name': 'Debian GNU/Linux 12 (bookworm)', 'family': 'debian', 'treatment': 'supported',
               'release_files': {}},
        'kernel': {'release': '6.1.0-18-amd64', 'version': '6.1.0', 'overlay': 'loadable',
                   'br_netfilter': 'loadable', 'cgroup': 'v2', 'ip_forward': False},
        'selinux': {'current': 'disabled', 'configured': None},
        'swap': {'total_mb': 0, 'devices': []},
        'memory_mb': 3921,
        'cpus': 2,
        'disks': [{'path': '/opt/ferry', 'existing': '/opt', 'device': 2049, 'free_mb': 20000, 'total_mb': 30000}],
        'listeners': [{'proto': 'tcp', 'port': 22, 'process': 'sshd'}],
        'python': {'version': '3.11.2', 'executable': '/usr/bin/python3'},
        'systemd': True,
        'epoch': 1764000000.0,
        'clock': {'offset_s': 0.1, 'uncertainty_s': 0.02},
    }


def reported(hostname):
    return {'_preflight_host': {'facts': facts(hostname), 'error': '',
                                'python': {'version': '3.11.2', 'error': ''}, 'policy': dict(POLICY)},
            'inventory_hostname': hostname}


def test_filter_is_registered():
    assert FilterModule().filters() == {'preflight_report': preflight_report}


def test_all_reporting_hosts_pass():
    hostvars = {'srv1': reported('srv1'), 'app1': reported('app1')}
    groups = {'all': ['srv1', 'app1'], 'k3s_server': ['srv1'], 'standalone': ['app1']}
    report = preflight_report(hostvars, ['srv1', 'app1'], groups)
    assert report['failed'] is False
    assert report['failures'] == []
    assert sorted(report['rows']) == ['app1', 'srv1']
    assert report['rows']['srv1']['inventory'] == {'status': 'ok', 'detail': 'k3s_server'}
    assert report['lines'][-1] == 'RESULT: PASS (2 hosts, 0 failed checks, 0 warnings, 0 waived)'


def test_host_without_preflight_host_fails():
    # dbs1 was unreachable: set_fact never ran there, so it has hostvars but no _preflight_host
    hostvars = {'srv1': reported('srv1'), 'app1': reported('app1'), 'dbs1': {'inventory_hostname': 'dbs1'}}
    groups = {'all': ['srv1', 'app1', 'dbs1'], 'k3s_server': ['srv1'], 'standalone': ['app1', 'dbs1']}
    report = preflight_report(hostvars, ['srv1', 'app1', 'dbs1'], groups)
    assert report['failed'] is True
    assert report['failures'] == ['dbs1: python: no python3 found (probe failed)']
    row = report['rows']['dbs1']
    assert row['python']['status'] == 'FAIL'
    assert [row[c]['status'] for c in CHECKS[1:-1]] == ['-'] * (len(CHECKS) - 2)
    assert row['arch']['detail'] == 'host did not report (unreachable?)'
    assert report['rows']['srv1']['python']['status'] == 'ok'
    assert report['lines'][-1] == 'RESULT: STOP (3 hosts, 1 failed checks, 0 warnings, 0 waived)'


def test_host_missing_from_hostvars_entirely():
    hostvars = {'app1': reported('app1')}
    report = preflight_report(hostvars, ['app1', 'ghost'], {'standalone': ['app1', 'ghost']})
    assert report['failed'] is True
    assert report['failures'] == ['ghost: python: no python3 found (probe failed)']


def test_empty_preflight_host_counts_as_not_reporting():
    hostvars = {'app1': reported('app1'), 'app2': {'_preflight_host': {}}}
    report = preflight_report(hostvars, ['app1', 'app2'], {'standalone': ['app1', 'app2']})
    assert report['failures'] == ['app2: python: no python3 found (probe failed)']


def test_only_play_hosts_are_reported():
    hostvars = {'srv1': reported('srv1'), 'app1': reported('app1')}
    report = preflight_report(hostvars, ['app1'], {'k3s_server': ['srv1'], 'standalone': ['app1']})
    assert sorted(report['rows']) == ['app1']


def test_groups_given_as_tuples_and_mappings_as_non_dicts():
    class Lazy(object):
        """Stands in for Ansible's lazy containers: has items() but is not a dict."""

        def __init__(self, data):
            self._data = data

        def items(self):
            return self._data.items()

    host = reported('app1')['_preflight_host']
    host['facts']['listeners'] = tuple(host['facts']['listeners'])
    hostvars = {'app1': {'_preflight_host': Lazy(host)}}
    report = preflight_report(hostvars, ['app1'], {'standalone': ('app1',)})
    assert report['failed'] is False
    assert report['rows']['app1']['ports']['status'] == 'ok'


def test_plain_converts_nested_containers():
    value = OrderedDict([('a', (1, OrderedDict([('b', [2, 3])]))), ('c', 'text')])
    plain = _plain(value)
    assert plain == {'a': [1, {'b': [2, 3]}], 'c': 'text'}
    assert isinstance(plain, dict) and not isinstance(plain, OrderedDict)
    assert isinstance(plain['a'], list)
    assert isinstance(plain['a'][1], dict) and not isinstance(plain['a'][1], OrderedDict)
