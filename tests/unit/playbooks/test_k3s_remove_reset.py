# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles k3s_reset and k3s_remove: their defaults follow roles/k3s's, every input is documented, and
reset.yml / remove_node.yml refuse, before any change, what needs no cluster to see (run for real against
local-connection hosts; refusals that need kubectl are tested in the k3s Molecule scenario)."""

import ast
import os
import re

import pytest
import yaml

from ansible_collections.ferry.airgap.tests.support.ferry_run import PROJECT, run_playbook

ROLES = os.path.join(PROJECT, 'roles')


def load(*parts):
    with open(os.path.join(ROLES, *parts)) as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize('role', ['k3s_reset', 'k3s_remove'])
def test_defaults_that_follow_roles_k3s_fall_back_to_its_defaults(role):
    k3s = load('k3s', 'defaults', 'main.yml')
    checked = 0
    for name, value in load(role, 'defaults', 'main.yml').items():
        match = re.match(r"^\{\{ (k3s_[a-z_]+) \| default\((.*)\) \}\}$", str(value))
        if not match or match.group(1) not in k3s:
            continue
        try:
            literal = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError):
            continue  # an expression (k3s_first_server): not a copy of a value
        assert literal == k3s[match.group(1)], (role, name)
        checked += 1
    assert checked >= 2, role


@pytest.mark.parametrize('role', ['k3s_reset', 'k3s_remove'])
def test_every_input_is_documented_and_prefixed(role):
    defaults = set(load(role, 'defaults', 'main.yml'))
    documented = set(load(role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options'])
    assert defaults == documented
    assert all(name.startswith(role + '_') for name in defaults)


def inventory(tmp_path, servers, agents=()):
    local = {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}'}
    data = {'all': {'hosts': dict((name, dict(local)) for name in list(servers) + list(agents)),
                    'children': {'k3s_server': {'hosts': dict((name, {}) for name in servers)},
                                 'k3s_agent': {'hosts': dict((name, {}) for name in agents)}}}}
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump(data))
    return str(path)


def changed(run):
    return dict((name, stats['changed']) for name, stats in run.stats().items() if stats['changed'])


@pytest.mark.parametrize('extra', [None, {'ferry_reset_confirm': 'yes'}, {'ferry_reset_confirm': 's2'}])
def test_reset_without_the_first_servers_name_is_refused(tmp_path, extra):
    run = run_playbook(os.path.join(PROJECT, 'playbooks', 'reset.yml'), inventory(tmp_path, ['s1', 's2', 's3'], ['a1']),
                       extra_vars=extra, timeout=300)
    assert run.rc != 0
    assert 'reset.yml removes k3s from s1, s2, s3, a1 (groups k3s_server, k3s_agent)' in run.stdout, run.tail()
    assert 'Nothing was changed (%s). To go on, run again with -e ferry_reset_confirm=s1' % (
        'ferry_reset_confirm is ' + extra['ferry_reset_confirm'] if extra else 'ferry_reset_confirm is not set') \
        in run.stdout.replace('\\n', ' '), run.tail()
    assert [play['play']['name'] for play in run.data['plays']] == ['Confirm the reset']
    assert changed(run) == {}


@pytest.mark.parametrize('nodes, message', [
    (None, 'no node to remove: name them with -e k3s_remove_nodes=<name>[,<name>] (inventory names) or put them in '
           'group k3s_remove. Nothing was changed.'),
    ('x9', 'x9 is not a host of group k3s_server or k3s_agent in the inventory (those are: s1, s2, s3, a1), so it '
           'cannot be reset here. Nothing was changed.'),
    ('a1, s1', 's1 is the first server (k3s_first_server): the cluster was initialised on it, the other nodes join '
               'through it and kubectl runs there, so it is not removed (to remove the whole cluster, run '
               'playbooks/reset.yml). Nothing was changed.'),
    (['s2', 's3'], '2 servers to remove at once (s2, s3): remove one server per run, so etcd keeps its quorum and '
                   'settles between removals. Nothing was changed.'),
])
def test_remove_node_refuses_before_asking_the_cluster(tmp_path, nodes, message):
    extra = {'k3s_remove_nodes': nodes} if nodes is not None else None
    run = run_playbook(os.path.join(PROJECT, 'playbooks', 'remove_node.yml'),
                       inventory(tmp_path, ['s1', 's2', 's3'], ['a1']), extra_vars=extra, timeout=300)
    assert run.rc != 0
    assert message in run.stdout.replace('\\n', ' '), run.tail()
    assert changed(run) == {}
    assert not run.task_results('List the cluster')  # refused before kubectl ran
