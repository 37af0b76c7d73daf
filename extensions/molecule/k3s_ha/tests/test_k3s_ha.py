"""Verifier for the k3s_ha scenario: 3 servers (embedded etcd) + 1 agent from the k3s test bundle.

Hosts: k3s-ha-s1 (deploy + first server), k3s-ha-s2, k3s-ha-s3 (servers), k3s-ha-a1 (agent).
"""
import json
import os
import sys

import pytest

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import molecule_hosts, run_playbook  # noqa: E402

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERGE = os.path.join(SCENARIO, '..', 'k3s', 'converge.yml')
SERVERS = ('k3s-ha-s1', 'k3s-ha-s2', 'k3s-ha-s3')
AGENT = 'k3s-ha-a1'
KUBECONFIG = '/etc/ferry/k3s/admin.kubeconfig'
CTR = 'k3s ctr -a /run/k3s/containerd/containerd.sock -n k8s.io '


@pytest.fixture(scope='module')
def hosts():
    return molecule_hosts()


def service(name):
    return 'k3s-agent' if name == AGENT else 'k3s'


def test_four_nodes_ready(hosts):
    out = hosts['k3s-ha-s1'].check_output('k3s kubectl --kubeconfig %s get nodes -o json' % KUBECONFIG)
    nodes = json.loads(out)['items']
    ready = dict((n['metadata']['name'], [c['status'] for c in n['status']['conditions'] if c['type'] == 'Ready'][0])
                 for n in nodes)
    assert ready == dict((name, 'True') for name in SERVERS + (AGENT,))
    roles = dict((n['metadata']['name'], 'node-role.kubernetes.io/etcd' in n['metadata']['labels']) for n in nodes)
    assert roles == {'k3s-ha-s1': True, 'k3s-ha-s2': True, 'k3s-ha-s3': True, AGENT: False}


def test_joiners_point_at_the_first_server_and_share_the_token(hosts):
    token = hosts['k3s-ha-s1'].file('/etc/rancher/k3s/token').content_string
    address = hosts['k3s-ha-s1'].check_output("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")
    for name in SERVERS[1:] + (AGENT,):
        host = hosts[name]
        assert host.file('/etc/rancher/k3s/token').mode == 0o600
        assert host.file('/etc/rancher/k3s/token').content_string == token
        config = host.file('/etc/rancher/k3s/config.yaml').content_string
        assert 'server: https://%s:6443' % address in config and 'cluster-init' not in config
        assert host.service(service(name)).is_running and host.service(service(name)).is_enabled
    assert not hosts[AGENT].file('/etc/systemd/system/k3s.service').exists


@pytest.mark.parametrize('name', SERVERS + (AGENT,))
def test_images_pinned_on_every_node(hosts, name):
    out = hosts[name].check_output(CTR + 'images ls')
    rows = dict((line.split()[0], line.split()[-1]) for line in out.splitlines()[1:] if line.strip())
    for ref in ('docker.io/rancher/mirrored-pause:3.1', 'docker.io/library/busybox:local-debian'):
        assert 'io.cri-containerd.pinned=pinned' in rows[ref].split(','), out


def test_rerun_restarts_nothing(hosts):
    before = dict((name, hosts[name].check_output('systemctl show -p MainPID --value %s' % service(name)))
                  for name in SERVERS + (AGENT,))
    run = run_playbook(CONVERGE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=1200)
    assert run.rc == 0, run.tail()
    for name in SERVERS + (AGENT,):
        assert run.stats()[name]['changed'] == 0, (name, run.stats()[name])
        assert hosts[name].check_output('systemctl show -p MainPID --value %s' % service(name)) == before[name]
