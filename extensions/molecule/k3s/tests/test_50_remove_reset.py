"""Removing nodes (playbooks/remove_node.yml) and resetting the cluster (playbooks/reset.yml), for real.

Runs after test_10_install.py, on the cluster it grew: servers k3s-s1, k3s-s2, k3s-s3 and agent k3s-a1. Removes the
agent, refuses what must not be removed, removes a server, then resets the rest. Each playbook gets the
inventory as the operator would have it at that point (removed hosts out of their group). The tests run in
file order and leave every host without k3s.
"""
import json
import os
import sys

import pytest

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import molecule_hosts, run_playbook, write_inventory  # noqa: E402

REMOVE = os.path.join(PROJECT, 'playbooks', 'remove_node.yml')
RESET = os.path.join(PROJECT, 'playbooks', 'reset.yml')
FIRST = 'k3s-s1'
SERVERS = ('k3s-s1', 'k3s-s2', 'k3s-s3')
AGENT = 'k3s-a1'
KUBECONFIG = '/etc/ferry/k3s/admin.kubeconfig'
TOKEN_FILE = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'k3s-token')
VOLUME = '/var/lib/rancher/k3s/storage/pvc-test'
# A pod held on the agent, so that it has a CNI bridge, a veth and a pod sandbox for the removal to clean up
# (after the rollback the scheduler may have left the agent without pods).
ON_THE_AGENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: on-the-agent, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: on-the-agent}}
  template:
    metadata: {labels: {app: on-the-agent}}
    spec:
      nodeSelector: {kubernetes.io/hostname: k3s-a1}
      terminationGracePeriodSeconds: 1
      containers:
        - name: sleep
          image: docker.io/library/busybox:local-debian
          imagePullPolicy: Never
          command: [sh, -c, "exec busybox sleep 3600"]
"""


@pytest.fixture(scope='module')
def hosts():
    return molecule_hosts()


@pytest.fixture(scope='module')
def inventories(tmp_path_factory):
    """The operator's inventory after each step (k3s-s1 is in k3s_server through Molecule's inventory)."""
    d = tmp_path_factory.mktemp('remove')
    ghost = {'k3s-ghost': {'ansible_host': AGENT}}  # an inventory host that is no node of the cluster
    return {
        'all': write_inventory(d, {'k3s_server': ['k3s-s2', 'k3s-s3'], 'k3s_agent': [AGENT]}, name='all.yml'),
        'ghost': write_inventory(d, {'k3s_server': ['k3s-s2', 'k3s-s3'], 'k3s_agent': [AGENT, 'k3s-ghost']},
                                 hostvars=ghost, name='ghost.yml'),
        'servers': write_inventory(d, {'k3s_server': ['k3s-s2', 'k3s-s3']}, name='servers.yml'),
        'two': write_inventory(d, {'k3s_server': ['k3s-s2']}, name='two.yml'),
        'delete_data': write_inventory(d, {'k3s_server': ['k3s-s2']}, hostvars={'k3s-s2': {'k3s_reset_delete_data': True}},
                                       name='delete_data.yml'),
    }


def play(playbook, inventory, extra_vars=None, args=()):
    return run_playbook(playbook, os.environ['MOLECULE_INVENTORY_FILE'], extra_vars=extra_vars, timeout=1200,
                        args=('-i', inventory) + tuple(args))


def main_pids(hosts, names):
    return dict((name, hosts[name].check_output('systemctl show -p MainPID --value %s'
                                                % ('k3s-agent' if name == AGENT else 'k3s'))) for name in names)


def nodes(host):
    out = host.check_output('k3s kubectl --kubeconfig %s get nodes -o json' % KUBECONFIG)
    return dict((n['metadata']['name'], [c['status'] for c in n['status']['conditions'] if c['type'] == 'Ready'][0])
                for n in json.loads(out)['items'])


def changed_hosts(run):
    return dict((name, stats['changed']) for name, stats in run.stats().items() if stats['changed'])


def assert_no_k3s(host, name):
    """Nothing of k3s's runs or is left on ``host``, except the local-path volumes."""
    procs = host.check_output('for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null; true')
    assert '/var/lib/rancher/k3s/' not in procs, (name, procs)
    for unit in ('k3s', 'k3s-agent'):
        assert host.check_output('systemctl show -p LoadState --value %s' % unit) == 'not-found', (name, unit)
        assert host.check_output('systemctl show -p ActiveState --value %s' % unit) == 'inactive', (name, unit)
        assert not host.file('/etc/systemd/system/%s.service' % unit).exists
    for path in ('/usr/local/bin/k3s', '/usr/local/bin/kubectl', '/usr/local/bin/crictl', '/etc/rancher/k3s',
                 '/etc/rancher/node', '/var/lib/kubelet', '/run/k3s', '/run/flannel'):
        assert not host.file(path).exists, (name, path)
    assert host.check_output('ls -A /var/lib/rancher/k3s 2>/dev/null; true') in ('', 'storage'), name
    mounts = host.check_output('cat /proc/self/mountinfo')
    assert '/run/k3s' not in mounts and '/var/lib/kubelet' not in mounts and '/run/netns/cni-' not in mounts, name
    links = host.check_output('ip -o link show')
    for interface in ('cni0', 'flannel.1', 'veth'):
        assert interface not in links, (name, links)
    rules = host.check_output('iptables-save; ip6tables-save')
    assert 'KUBE-' not in rules and 'FLANNEL' not in rules and 'CNI-' not in rules, (name, rules)
    # the site's own rule (put there before) stays
    assert 'ferry-test site rule' in rules, (name, rules)


def test_the_cluster_is_the_one_test_10_install_grew(hosts):
    assert nodes(hosts[FIRST]) == dict((name, 'True') for name in SERVERS + (AGENT,)), \
        'test_50_remove_reset.py runs after test_10_install.py has joined k3s-s2, k3s-s3 and k3s-a1'
    for name in SERVERS + (AGENT,):
        # a firewall rule of the site's, which no reset may remove
        hosts[name].check_output('iptables -C INPUT -p tcp --dport 2222 -m comment --comment "ferry-test site rule" '
                                 '-j ACCEPT 2>/dev/null || iptables -A INPUT -p tcp --dport 2222 -m comment '
                                 '--comment "ferry-test site rule" -j ACCEPT')


def test_a_name_that_is_no_node_is_refused_and_nothing_changes(hosts, inventories):
    before = main_pids(hosts, SERVERS + (AGENT,))
    run = play(REMOVE, inventories['all'], {'k3s_remove_nodes': 'k3s-x9'})
    assert run.rc != 0
    assert ('k3s-x9 is not a host of group k3s_server or k3s_agent in the inventory (those are: k3s-s1, k3s-s2, '
            'k3s-s3, k3s-a1), so it cannot be reset here. Nothing was changed.') in run.stdout, run.tail()
    run = play(REMOVE, inventories['ghost'], {'k3s_remove_nodes': 'k3s-ghost'})
    assert run.rc != 0
    assert ('k3s-ghost is not a node of the cluster: k3s kubectl get nodes on k3s-s1 lists k3s-a1, k3s-s1, k3s-s2, '
            'k3s-s3. Nothing was changed.') in run.stdout, run.tail()
    assert changed_hosts(run) == {}
    assert main_pids(hosts, SERVERS + (AGENT,)) == before


def test_removing_the_first_server_is_refused_and_nothing_changes(hosts, inventories):
    before = main_pids(hosts, SERVERS + (AGENT,))
    run = play(REMOVE, inventories['all'], {'k3s_remove_nodes': 'k3s-a1,k3s-s1'})
    assert run.rc != 0
    assert ('k3s-s1 is the first server (k3s_first_server): the cluster was initialised on it, the other nodes join '
            'through it and kubectl runs there, so it is not removed (to remove the whole cluster, run '
            'playbooks/reset.yml). Nothing was changed.') in run.stdout, run.tail()
    assert changed_hosts(run) == {}
    assert main_pids(hosts, SERVERS + (AGENT,)) == before
    assert nodes(hosts[FIRST])[AGENT] == 'True'  # not even cordoned: k3s-a1 came first in the list
    assert 'SchedulingDisabled' not in hosts[FIRST].check_output('k3s kubectl --kubeconfig %s get node %s'
                                                                 % (KUBECONFIG, AGENT))


def test_removing_the_agent_drains_deletes_and_resets_it_and_restarts_no_other_node(hosts, inventories):
    agent = hosts[AGENT]
    agent.check_output('mkdir -p %s && echo kept > %s/data.txt' % (VOLUME, VOLUME))
    first = hosts[FIRST]
    first.check_output("cat > /tmp/on-the-agent.yaml <<'EOF'\n%s\nEOF" % ON_THE_AGENT.strip())
    first.check_output('k3s kubectl --kubeconfig %s apply -f /tmp/on-the-agent.yaml' % KUBECONFIG)
    first.check_output('k3s kubectl --kubeconfig %s rollout status deployment/on-the-agent --timeout=180s' % KUBECONFIG)
    agent.check_output('ip -o link show cni0')  # there is something to remove
    before = main_pids(hosts, SERVERS)
    run = play(REMOVE, inventories['all'], {'k3s_remove_nodes': AGENT})
    assert run.rc == 0, run.tail()
    # drained from the first server (the task runs there): its kubectl drain named the agent
    drained = run.task_results('Drain node').get(FIRST, {})
    assert drained.get('changed') and AGENT in (drained.get('cmd') or []), run.tail()
    assert AGENT not in nodes(hosts[FIRST])
    assert_no_k3s(agent, AGENT)
    assert agent.file(VOLUME + '/data.txt').content_string.strip() == 'kept'
    assert main_pids(hosts, SERVERS) == before
    # the removed node's password secret went with its Node: the host could join again
    assert 'k3s-a1.node-password.k3s' not in hosts[FIRST].check_output(
        'k3s kubectl --kubeconfig %s -n kube-system get secrets -o name' % KUBECONFIG)
    assert hosts[FIRST].file(KUBECONFIG).exists  # removing a node keeps the admin kubeconfig


def test_removing_a_server_that_leaves_an_even_number_needs_force(hosts, inventories):
    before = main_pids(hosts, SERVERS)
    run = play(REMOVE, inventories['servers'], {'k3s_remove_nodes': 'k3s-s3'})
    assert run.rc != 0
    assert ('removing k3s-s3 leaves 2 servers (k3s-s1, k3s-s2): an even number of etcd members tolerates no more '
            'failures than one less (2 tolerate none), and preflight refuses an even k3s_server. Add a server first, '
            'or set k3s_remove_force=true to go on. Nothing was changed.') in run.stdout, run.tail()
    assert changed_hosts(run) == {}
    assert main_pids(hosts, SERVERS) == before
    run = play(REMOVE, inventories['servers'], {'k3s_remove_nodes': 'k3s-s2,k3s-s3'})
    assert run.rc != 0
    assert ('2 servers to remove at once (k3s-s2, k3s-s3): remove one server per run, so etcd keeps its quorum and '
            'settles between removals. Nothing was changed.') in run.stdout, run.tail()


def test_removing_a_server_leaves_two_servers_ready_and_etcd_healthy(hosts, inventories):
    before = main_pids(hosts, SERVERS[:2])
    run = play(REMOVE, inventories['servers'], {'k3s_remove_nodes': 'k3s-s3', 'k3s_remove_force': True})
    assert run.rc == 0, run.tail()
    first = hosts[FIRST]
    assert nodes(first) == {'k3s-s1': 'True', 'k3s-s2': 'True'}
    assert first.check_output('k3s kubectl --kubeconfig %s get --raw /healthz/etcd' % KUBECONFIG) == 'ok'
    assert hosts['k3s-s2'].check_output('k3s kubectl get --raw /healthz/etcd') == 'ok'
    members = run.task_results('Show the etcd members left')[FIRST]['msg']
    assert 'k3s-s3' not in members and 'k3s-s1' in members and 'k3s-s2' in members, members
    assert_no_k3s(hosts['k3s-s3'], 'k3s-s3')
    assert main_pids(hosts, SERVERS[:2]) == before


def test_reset_without_confirmation_is_refused_and_changes_nothing(hosts, inventories):
    before = main_pids(hosts, SERVERS[:2])
    for extra in (None, {'ferry_reset_confirm': 'yes'}):
        run = play(RESET, inventories['two'], extra)
        assert run.rc != 0
        assert 'reset.yml removes k3s from k3s-s1, k3s-s2 (groups k3s_server, k3s_agent)' in run.stdout, run.tail()
        assert 'To go on, run again with -e ferry_reset_confirm=k3s-s1' in run.stdout, run.tail()
        assert changed_hosts(run) == {}
    assert main_pids(hosts, SERVERS[:2]) == before


def test_reset_in_check_mode_changes_nothing(hosts, inventories):
    before = main_pids(hosts, SERVERS[:2])
    run = play(RESET, inventories['two'], {'ferry_reset_confirm': FIRST}, args=('--check',))
    assert run.rc == 0, run.tail()
    predicted = run.task_results("Remove k3s's processes, mounts")
    assert predicted['k3s-s1']['changed'] and '/run/k3s' in ' '.join(predicted['k3s-s1']['removed']['paths'])
    assert main_pids(hosts, SERVERS[:2]) == before
    assert hosts[FIRST].file('/var/lib/rancher/k3s/server').is_directory


def test_reset_removes_k3s_everywhere_and_keeps_the_volumes(hosts, inventories):
    for name in SERVERS[:2]:
        hosts[name].check_output('mkdir -p %s && echo kept > %s/data.txt' % (VOLUME, VOLUME))
    run = play(RESET, inventories['two'], {'ferry_reset_confirm': FIRST})
    assert run.rc == 0, run.tail()
    for name in SERVERS[:2]:
        assert_no_k3s(hosts[name], name)
        assert hosts[name].file(VOLUME + '/data.txt').content_string.strip() == 'kept'
    assert not hosts[FIRST].file(KUBECONFIG).exists
    assert os.path.exists(TOKEN_FILE)  # kept: restoring an etcd snapshot needs it
    assert hosts[FIRST].file('/var/lib/ferry/bundle').is_directory  # the host's bundle copy stays
    assert hosts[FIRST].file('/opt/ferry/bundles/ferry-k3s/manifest.json').exists


def test_a_second_reset_changes_nothing(inventories):
    run = play(RESET, inventories['two'], {'ferry_reset_confirm': FIRST})
    assert run.rc == 0, run.tail()
    assert changed_hosts(run) == {}


def test_delete_data_removes_the_volumes_of_that_host_only(hosts, inventories):
    run = play(RESET, inventories['delete_data'], {'ferry_reset_confirm': FIRST})
    assert run.rc == 0, run.tail()
    assert changed_hosts(run) == {'k3s-s2': 1}
    assert not hosts['k3s-s2'].file('/var/lib/rancher/k3s').exists
    assert hosts[FIRST].file(VOLUME + '/data.txt').exists
