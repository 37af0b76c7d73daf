# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role k3s's tasks/selinux.yml and role ferry's choice of policy RPMs, run for real with ansible-playbook on localhost.

This machine is Debian without SELinux: the install itself (dnf with the host's RPM copies) cannot succeed
here. What runs: the task file on this host's own facts (nothing to do), and with the host fact ferry_host
given as an extra var (enforcing, an EL release) the refusals and the dnf call's arguments.
"""

import json
import sys

import pytest
import yaml

from ansible_collections.ferry.airgap.tests.support.ferry_run import ansible

pytestmark = pytest.mark.integration

READ = "Read the host's SELinux mode"
REQUIRE = "Require the bundle's policy RPMs"
INSTALL = 'Install the policy RPMs from'
KYLIN = {'id': 'kylin', 'version': 'V10', 'family': 'redhat', 'el': 'el8'}


def enforcing(os_info=None, arch='aarch64'):
    return {'arch': arch, 'os': dict(os_info or KYLIN), 'selinux': {'current': 'enforcing', 'configured': 'enforcing'}}


def run(tmp_path, extra=None, group='k3s_server', tasks=None):
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump({'all': {
        'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable},
        'children': {group: {'hosts': {'localhost': {}}}}}}))
    play = tmp_path / 'play.yml'
    play.write_text(yaml.safe_dump([{
        'name': 'SELinux policy', 'hosts': 'all', 'gather_facts': False,
        'roles': [{'role': 'ferry.airgap.ferry'}],
        'tasks': tasks or [{'name': 'The SELinux step of role k3s', 'ansible.builtin.include_role': {
            'name': 'ferry.airgap.k3s', 'tasks_from': 'selinux'}}]}]))
    argv = ['-i', str(inventory), str(play)]
    if extra:
        argv += ['-e', json.dumps(extra)]
    return ansible(argv, timeout=300)


def test_nothing_runs_on_a_host_without_selinux_enforcing(tmp_path):
    """This machine's own facts (host_facts reads them: no SELinux here): the install block is skipped."""
    result = run(tmp_path)
    assert result.rc == 0, result.tail()
    read = result.task_results(READ)['localhost']
    assert read.get('skipped') is not True and read['changed'] is False
    assert read['ansible_facts']['ferry_host']['selinux']['current'] != 'enforcing'
    assert result.task_results(REQUIRE)['localhost']['skipped'] is True
    assert result.task_results(INSTALL)['localhost']['skipped'] is True
    assert result.stats()['localhost']['changed'] == 0


@pytest.mark.parametrize('current', ['permissive', 'disabled'])
def test_nothing_runs_when_permissive_or_disabled_even_without_the_rpms(tmp_path, current):
    facts = enforcing()
    facts['selinux']['current'] = current
    result = run(tmp_path, {'ansible_facts': {'ferry_host': facts}, 'ferry_artifacts': {'k3s': '/nonexistent/k3s'}})
    assert result.rc == 0, result.tail()
    assert result.task_results(READ)['localhost']['skipped'] is True  # preflight's facts are used, not read again
    assert result.task_results(REQUIRE)['localhost']['skipped'] is True
    assert result.task_results(INSTALL)['localhost']['skipped'] is True


def test_enforcing_without_the_rpms_on_the_host_fails_naming_them(tmp_path):
    result = run(tmp_path, {'ansible_facts': {'ferry_host': enforcing()}, 'ferry_artifacts': {'k3s': '/b/k3s'}})
    assert result.rc != 0
    failed = result.task_results(REQUIRE)['localhost']
    assert failed['failed'] is True
    assert failed['msg'] == (
        "SELinux is enforcing on localhost (kylin V10, el8) and the bundle's policy RPMs container-selinux-el8 and "
        "k3s-selinux-el8 are not on the host (distribute brought: k3s): add them to the bundle spec (docs/install.md, "
        "SELinux), or set SELinux permissive, or set k3s_selinux_policy to skip to install k3s without them.")
    assert INSTALL not in json.dumps(list(result.tasks()))


def test_enforcing_el7_is_refused_clearly(tmp_path):
    centos7 = {'id': 'centos', 'version': '7', 'family': 'redhat', 'el': 'el7'}
    artifacts = {'container-selinux-el7': '/b/c.rpm', 'k3s-selinux-el7': '/b/k.rpm'}
    result = run(tmp_path, {'ansible_facts': {'ferry_host': enforcing(centos7)}, 'ferry_artifacts': artifacts})
    assert result.rc != 0
    assert result.task_results(REQUIRE)['localhost']['msg'].startswith(
        'SELinux is enforcing on localhost (centos 7, el7) and the role installs policy RPMs with dnf, which el7 '
        'lacks: install container-selinux-el7 and k3s-selinux-el7 with yum yourself, or set SELinux permissive')


def test_enforcing_outside_the_el_family_is_refused(tmp_path):
    debian = {'id': 'debian', 'version': '12', 'family': 'debian', 'el': ''}
    result = run(tmp_path, {'ansible_facts': {'ferry_host': enforcing(debian)}, 'ferry_artifacts': {'k3s': '/b/k3s'}})
    assert result.rc != 0
    assert result.task_results(REQUIRE)['localhost']['msg'].startswith(
        'SELinux is enforcing on localhost (debian 12, no EL release) and Ferry carries SELinux policy RPMs for EL '
        'releases only, or set SELinux permissive')


def test_skip_leaves_selinux_to_the_site(tmp_path):
    result = run(tmp_path, {'ansible_facts': {'ferry_host': enforcing()}, 'ferry_artifacts': {'k3s': '/b/k3s'},
                            'k3s_selinux_policy': 'skip'})
    assert result.rc == 0, result.tail()
    assert result.task_results(INSTALL)['localhost']['skipped'] is True


def test_enforcing_with_the_rpms_calls_dnf_with_the_host_copies_and_no_repository(tmp_path):
    """dnf itself cannot run on this Debian machine: the task is reached with the right arguments, then fails."""
    artifacts = {'k3s': '/b/k3s', 'k3s-selinux-el8': '/b/k3s-selinux-1.6-1.el8.noarch.rpm',
                 'container-selinux-el8': '/b/container-selinux-2.229.0-2.el8.noarch.rpm'}
    # pkg_mgr: what a dnf host's facts say; dnf's action plugin then runs the module (which finds no dnf here)
    result = run(tmp_path, {'ansible_facts': {'ferry_host': enforcing(), 'pkg_mgr': 'dnf'}, 'ferry_artifacts': artifacts})
    assert result.task_results(REQUIRE)['localhost'].get('failed') is not True, result.tail()
    install = result.task_results(INSTALL)['localhost']
    assert install.get('skipped') is not True
    args = install['invocation']['module_args']
    assert args['name'] == ['/b/container-selinux-2.229.0-2.el8.noarch.rpm', '/b/k3s-selinux-1.6-1.el8.noarch.rpm']
    assert args['disablerepo'] == ['*'] and args['state'] == 'present'
    assert args['disable_gpg_check'] is False
    assert install['failed'] is True and 'dnf' in install['msg']  # no dnf here


def test_role_ferry_brings_the_policy_rpms_to_enforcing_k3s_hosts_only(tmp_path):
    show = [{'name': 'Show', 'ansible.builtin.debug': {
        'msg': '{{ {"host": ferry_host_artifacts, "policy": ferry_host_selinux_policy} }}'}}]
    bundle = {'arch_artifacts': {'aarch64': ['container-selinux-el8', 'k3s', 'k3s-selinux-el8'], 'x86_64': ['k3s']}}

    def shown(facts, group='k3s_server', arch_artifacts=None):
        extra = {'ferry_bundle': arch_artifacts or bundle}
        if facts is not None:
            extra['ansible_facts'] = {'ferry_host': facts}
        result = run(tmp_path, extra, group=group, tasks=show)
        assert result.rc == 0, result.tail()
        return result.task_results('Show')['localhost']['msg']

    policy = ['container-selinux-el8', 'k3s-selinux-el8']
    assert shown(enforcing()) == {'host': ['k3s'] + policy, 'policy': policy}
    assert shown(enforcing(), group='k3s_agent')['host'] == ['k3s'] + policy
    # not for a standalone host, a permissive one, another arch the bundle has no policy for, or without host facts
    assert shown(enforcing(), group='standalone')['host'] == ['containerd', 'runc', 'cni-plugins']
    permissive = enforcing()
    permissive['selinux']['current'] = 'permissive'
    assert shown(permissive) == {'host': ['k3s'], 'policy': policy}
    assert shown(enforcing(arch='x86_64'))['host'] == ['k3s']
    assert shown(None) == {'host': ['k3s'], 'policy': []}
    # noarch policy RPMs are offered to every arch by bundle_verify's arch_artifacts: taken the same way
    assert shown(enforcing(arch='x86_64'), arch_artifacts={'arch_artifacts': {'x86_64': ['k3s'] + policy}})['host'] == \
        ['k3s'] + policy
