"""Verifier for the k3s scenario: real k3s v1.21.8+k3s1 from the bundle (tests/support/testbundle.py --k3s v1.21.8+k3s1).

Converge ran verify, distribute and playbooks/k3s.yml with k3s-s1 (deploy + k3s_server) alone: a single-node
cluster, checked first. Then the tests add k3s-s2, k3s-s3 (servers, joined one at a time) and k3s-a1
(agent) to the inventory, rerun converge, and check the HA cluster. The tests run in file order, and the
test modules in file-name order (test_10_install, then the upgrade, rollback, removal and reset modules),
on the same hosts.
"""
import calendar
import json
import os
import sys
import time

import pytest

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import molecule_hosts, run_playbook, write_inventory  # noqa: E402

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERGE = os.path.join(SCENARIO, 'converge.yml')
SERVER = 'k3s-s1'
SERVERS = ('k3s-s1', 'k3s-s2', 'k3s-s3')
AGENT = 'k3s-a1'
TOKEN_FILE = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'k3s-token')
KUBECONFIG = '/etc/ferry/k3s/admin.kubeconfig'
CTR = 'k3s ctr -a /run/k3s/containerd/containerd.sock -n k8s.io '
IMAGES = ['docker.io/rancher/mirrored-pause:3.1', 'docker.io/library/busybox:local-debian']
WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: httpd
          image: docker.io/library/busybox:local-debian
          imagePullPolicy: Never
          command: [sh, -c, "mkdir -p /www && echo ferry k3s web > /www/index.html && exec busybox httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture(scope='module')
def hosts():
    return molecule_hosts()


@pytest.fixture(scope='module')
def host(hosts):
    return hosts[SERVER]


def service(name):
    return 'k3s-agent' if name == AGENT else 'k3s'


def main_pids(hosts, names):
    return dict((name, hosts[name].check_output('systemctl show -p MainPID --value %s' % service(name)))
                for name in names)


@pytest.fixture(scope='module')
def grown(tmp_path_factory):
    """An inventory that adds k3s-s2, k3s-s3 to k3s_server and k3s-a1 to k3s_agent (used with Molecule's)."""
    return write_inventory(tmp_path_factory.mktemp('grown'), {'k3s_server': list(SERVERS[1:]), 'k3s_agent': [AGENT]})


def converge(extra_inventory=None, timeout=900):
    args = ('-i', extra_inventory) if extra_inventory else ()
    return run_playbook(CONVERGE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=timeout, args=args)


def restarted(run):
    """Hosts whose k3s unit the role restarted in ``run`` (any play)."""
    return set(name for task in run.tasks() if task['task']['name'].startswith('ferry.airgap.k3s : Restart the unit')
               for name, result in task['hosts'].items() if result.get('changed'))


def kubectl(host, *args):
    return host.check_output('k3s kubectl --kubeconfig %s %s' % (KUBECONFIG, ' '.join(args)))


def test_k3s_is_the_bundles_binary_and_runs(host):
    assert host.file('/usr/local/bin/k3s').mode == 0o755
    assert "v1.21.8+k3s1" in host.check_output('k3s --version')
    sha = host.check_output('sha256sum /usr/local/bin/k3s').split()[0]
    manifest = json.loads(host.file('/opt/ferry/bundles/ferry-k3s/manifest.json').content_string)
    assert [a['sha256'] for a in manifest['artifacts'] if a['name'] == 'k3s'] == [sha]
    service = host.service('k3s')
    assert service.is_running and service.is_enabled
    assert not host.file('/usr/local/bin/containerd').exists  # no standalone containerd on a k3s host


def test_node_ready_through_the_fetched_kubeconfig(host):
    kubeconfig = host.file(KUBECONFIG)
    assert kubeconfig.mode == 0o600 and kubeconfig.user == 'root'
    assert host.file(os.path.dirname(KUBECONFIG)).mode == 0o700
    assert '127.0.0.1' not in kubeconfig.content_string
    address = host.check_output("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")
    assert 'server: https://%s:6443' % address in kubeconfig.content_string
    status = kubectl(host, 'get', 'node', SERVER, '-o', "jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'")
    assert status == 'True'


def test_token_and_config_are_private(host):
    for path in ('/etc/rancher/k3s/token', '/etc/rancher/k3s/config.yaml'):
        assert host.file(path).mode == 0o600, path
    token = host.file('/etc/rancher/k3s/token').content_string.strip()
    assert len(token) == 48
    config = host.file('/etc/rancher/k3s/config.yaml').content_string
    assert token not in config and 'token-file: /etc/rancher/k3s/token' in config
    assert 'cluster-init: true' in config
    # the controller's copy: generated once, 0600
    assert oct(os.stat(TOKEN_FILE).st_mode & 0o777) == '0o600'
    with open(TOKEN_FILE) as handle:
        assert handle.read().strip() == token
    # the token never reached the journal
    assert token not in host.check_output('journalctl --no-pager -o cat')


def test_images_loaded_pinned_and_not_in_the_agent_images_dir(host):
    out = host.check_output(CTR + 'images ls')
    rows = dict((line.split()[0], line.split()[-1]) for line in out.splitlines()[1:] if line.strip())
    for ref in IMAGES:
        assert ref in rows, out
        assert 'io.cri-containerd.pinned=pinned' in rows[ref].split(','), rows[ref]
    assert not host.file('/var/lib/rancher/k3s/agent/images').exists or \
        host.check_output('ls -A /var/lib/rancher/k3s/agent/images') == ''


def test_busybox_web_answers_through_a_service(host):
    host.check_output("cat > /tmp/web.yaml <<'EOF'\n%s\nEOF" % WEB.strip())
    kubectl(host, 'apply', '-f', '/tmp/web.yaml')
    kubectl(host, 'rollout', 'status', 'deployment/web', '--timeout=180s')
    ip = kubectl(host, 'get', 'service', 'web', '-o', "jsonpath='{.spec.clusterIP}'")
    deadline = time.time() + 60
    while True:
        answer = host.run('python3 -c "import urllib.request, sys; '
                          'print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" http://%s/' % ip)
        if answer.rc == 0 or time.time() > deadline:
            break
        time.sleep(2)
    assert answer.stdout.strip() == 'ferry k3s web', answer.stderr


def test_rerun_changes_and_restarts_nothing(host):
    pid = host.check_output('systemctl show -p MainPID --value k3s')
    started = host.check_output('systemctl show -p ExecMainStartTimestamp --value k3s')
    run = converge()
    assert run.rc == 0, run.tail()
    stats = run.stats()[SERVER]
    assert stats['changed'] == 0 and stats['failures'] == 0, stats
    assert host.check_output('systemctl show -p MainPID --value k3s') == pid
    assert host.check_output('systemctl show -p ExecMainStartTimestamp --value k3s') == started


# --------------------------------------------------------------------------- bad input on the single node

def test_a_token_file_others_can_read_is_refused_and_nothing_changes(host):
    pid = host.check_output('systemctl show -p MainPID --value k3s')
    os.chmod(TOKEN_FILE, 0o644)
    try:
        run = converge()
    finally:
        os.chmod(TOKEN_FILE, 0o600)
    assert run.rc != 0
    assert '%s (k3s_token_file, the cluster token) has mode 0644: expected 0600' % TOKEN_FILE in run.stdout, run.tail()
    assert run.stats()[SERVER]['changed'] == 0, run.stats()
    assert host.check_output('systemctl show -p MainPID --value k3s') == pid


def test_a_token_that_is_not_the_clusters_is_refused_and_nothing_changes(host):
    pid = host.check_output('systemctl show -p MainPID --value k3s')
    run = run_playbook(CONVERGE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=900,
                       extra_vars={'k3s_token': 'another-site-secret-0123456789abcdefghij'})
    assert run.rc != 0
    assert 'does not hold the secret of k3s_token: this cluster was made with another token' in run.stdout, run.tail()
    assert 'another-site-secret' not in run.stdout + run.stderr
    assert run.stats()[SERVER]['changed'] == 0, run.stats()
    assert host.file('/etc/rancher/k3s/token').mode == 0o600
    assert host.check_output('systemctl show -p MainPID --value k3s') == pid


def test_registries_yaml_reaches_k3s_containerd_and_goes_away_when_unset(host):
    mirrors = {'k3s_registry_mirrors': {'registry.ferry.test': {'endpoint': ['http://127.0.0.1:5000']}}}
    rendered = '/var/lib/rancher/k3s/agent/etc/containerd/config.toml'
    try:
        run = run_playbook(CONVERGE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=900, extra_vars=mirrors)
        assert run.rc == 0, run.tail()
        registries = host.file('/etc/rancher/k3s/registries.yaml')
        assert registries.mode == 0o600 and 'registry.ferry.test' in registries.content_string
        assert restarted(run) == {SERVER}
        config = host.file(rendered).content_string
        assert '[plugins.cri.registry.mirrors."registry.ferry.test"]' in config
        assert 'endpoint = ["http://127.0.0.1:5000"]' in config
    finally:
        run = converge()
    assert run.rc == 0, run.tail()
    assert restarted(run) == {SERVER}
    assert not host.file('/etc/rancher/k3s/registries.yaml').exists
    assert 'registry.ferry.test' not in host.file(rendered).content_string


def test_the_embedded_registry_mirror_on_a_k3s_without_it_is_refused_and_nothing_changes(host):
    pid = host.check_output('systemctl show -p MainPID --value k3s')
    run = run_playbook(CONVERGE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=900,
                       extra_vars={'k3s_embedded_registry': True})
    assert run.rc != 0
    assert ('k3s_embedded_registry needs k3s 1.26.13, 1.27.10, 1.28.6, 1.29.1 or newer; the bundle carries '
            'k3s 1.21.8+k3s1 for x86_64. Nothing was changed') in run.stdout, run.tail()
    assert run.stats()[SERVER]['changed'] == 0, run.stats()
    assert not host.file('/etc/rancher/k3s/registries.yaml').exists
    assert 'embedded-registry' not in host.file('/etc/rancher/k3s/config.yaml').content_string
    assert host.check_output('systemctl show -p MainPID --value k3s') == pid


# --------------------------------------------------------------------------- add nodes: HA, 3 servers + 1 agent

def kube_time(text):
    return calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M:%SZ'))


def unit_start(host, unit):
    text = host.check_output('date -u -d "$(systemctl show -p ExecMainStartTimestamp --value %s)" +%%s' % unit)
    return int(text)


def untouched_by_k3s(hosts, names):
    """None of ``names`` has k3s's binary, unit or configuration."""
    for name in names:
        for path in ('/usr/local/bin/k3s', '/etc/rancher/k3s', '/etc/systemd/system/k3s.service',
                     '/etc/systemd/system/k3s-agent.service'):
            assert not hosts[name].file(path).exists, (name, path)


def test_an_even_number_of_servers_is_refused_by_preflight_before_any_change(hosts, tmp_path):
    inventory = write_inventory(tmp_path, {'k3s_server': ['k3s-s2']})
    before = main_pids(hosts, [SERVER])
    run = converge(inventory)
    assert run.rc != 0
    for name in SERVERS[:2]:
        assert ('%s: inventory: k3s_server has 2 hosts (k3s-s1, k3s-s2): embedded etcd needs an odd number of '
                'servers (1, 3, 5)' % name) in run.stdout, run.tail()
    assert run.stats()[SERVER]['changed'] == 0 and run.stats()['k3s-s2']['changed'] == 0, run.stats()
    assert not hosts['k3s-s2'].file('/var/lib/ferry').exists
    untouched_by_k3s(hosts, ['k3s-s2'])
    assert main_pids(hosts, [SERVER]) == before


def test_servers_that_disagree_on_a_critical_setting_are_refused_before_any_change(hosts, tmp_path):
    inventory = write_inventory(tmp_path, {'k3s_server': list(SERVERS[1:]), 'k3s_agent': [AGENT]},
                                hostvars={'k3s-s2': {'k3s_config': {'cluster-cidr': '10.52.0.0/16'}}})
    before = main_pids(hosts, [SERVER])
    run = converge(inventory)
    assert run.rc != 0
    assert ('They differ: cluster-cidr: k3s-s1=(k3s default), k3s-s2=10.52.0.0/16, k3s-s3=(k3s default). '
            'Nothing was changed') in run.stdout, run.tail()
    for name in SERVERS + (AGENT,):
        assert run.stats()[name]['changed'] == 0, (name, run.stats()[name])
    # stopped before distribute: the new hosts got nothing at all
    for name in SERVERS[1:] + (AGENT,):
        assert not hosts[name].file('/var/lib/ferry').exists, name
    untouched_by_k3s(hosts, SERVERS[1:] + (AGENT,))
    assert main_pids(hosts, [SERVER]) == before


def test_a_server_that_never_becomes_ready_stops_the_run_naming_it_and_the_rest_is_not_touched(hosts, tmp_path):
    # k3s-s2 is pointed at a port nothing serves: it never gets the cluster's bootstrap data
    inventory = write_inventory(tmp_path, {'k3s_server': list(SERVERS[1:]), 'k3s_agent': [AGENT]},
                                hostvars={'k3s-s2': {'k3s_api_port': 6449, 'k3s_wait_timeout': 40}})
    before = main_pids(hosts, [SERVER])
    run = converge(inventory)
    assert run.rc != 0
    messages = [result.get('msg', '') for task in run.tasks() for name, result in task['hosts'].items()
                if name == 'k3s-s2' and result.get('failed')]
    assert messages and messages[-1].startswith(
        'node k3s-s2 (k3s-s2): k3s did not start (systemd: '), (messages, run.tail())
    assert 'a start may take up to k3s_wait_timeout = 40 s)' in messages[-1], messages[-1]
    assert '. k3s on k3s-s2 logged last: ' in messages[-1], messages[-1]
    # what k3s logged: it cannot reach the first server on that port
    assert ':6449' in messages[-1].split('logged last: ', 1)[1], messages[-1]
    # serial servers: k3s-s3 and the agent were never started on; k3s-s1 was not restarted
    untouched_by_k3s(hosts, ('k3s-s3', AGENT))
    assert main_pids(hosts, [SERVER]) == before


def test_adding_nodes_joins_them_one_at_a_time_and_restarts_nothing_else(hosts, grown):
    before = main_pids(hosts, [SERVER])
    run = converge(grown, timeout=1800)
    assert run.rc == 0, run.tail()
    # the deploy node served the new hosts' files (its server started and stopped); k3s-s1's k3s was not
    # touched: no k3s task changed there, no restart
    changed = [task['task']['name'] for task in run.tasks() if task['hosts'].get(SERVER, {}).get('changed')]
    assert all(name.startswith('ferry.airgap.distribute : ') for name in changed), changed
    assert restarted(run) == set(SERVERS[1:] + (AGENT,))
    assert main_pids(hosts, [SERVER]) == before
    nodes = json.loads(hosts[SERVER].check_output('k3s kubectl --kubeconfig %s get nodes -o json' % KUBECONFIG))['items']
    ready_at = {}
    for node in nodes:
        ready = [c for c in node['status']['conditions'] if c['type'] == 'Ready'][0]
        ready_at[node['metadata']['name']] = kube_time(ready['lastTransitionTime'])
    # one at a time: k3s-s3 started only after k3s-s2 was Ready
    assert unit_start(hosts['k3s-s3'], 'k3s') >= ready_at['k3s-s2'], (ready_at, unit_start(hosts['k3s-s3'], 'k3s'))


def test_four_nodes_ready_three_etcd_members(hosts):
    out = hosts[SERVER].check_output('k3s kubectl --kubeconfig %s get nodes -o json' % KUBECONFIG)
    nodes = json.loads(out)['items']
    ready = dict((n['metadata']['name'], [c['status'] for c in n['status']['conditions'] if c['type'] == 'Ready'][0])
                 for n in nodes)
    assert ready == dict((name, 'True') for name in SERVERS + (AGENT,))
    roles = dict((n['metadata']['name'], 'node-role.kubernetes.io/etcd' in n['metadata']['labels']) for n in nodes)
    assert roles == {'k3s-s1': True, 'k3s-s2': True, 'k3s-s3': True, AGENT: False}


def test_joiners_point_at_the_first_server_with_the_secure_token(hosts):
    with open(TOKEN_FILE) as handle:
        secret = handle.read().strip()
    address = hosts[SERVER].check_output("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")
    cluster_token = hosts[SERVER].check_output('cat /var/lib/rancher/k3s/server/token').strip()
    assert cluster_token.startswith('K10') and cluster_token.endswith('::server:' + secret)
    for name in SERVERS[1:] + (AGENT,):
        host = hosts[name]
        assert host.file('/etc/rancher/k3s/token').mode == 0o600
        # the secure form: K10<CA hash>::server:<secret>, so the joiner checks the CA it joins
        assert host.file('/etc/rancher/k3s/token').content_string.strip() == cluster_token
        config = host.file('/etc/rancher/k3s/config.yaml').content_string
        assert 'server: https://%s:6443' % address in config and 'cluster-init' not in config
        assert host.service(service(name)).is_running and host.service(service(name)).is_enabled
        assert secret not in host.check_output('journalctl --no-pager -o cat')
    assert not hosts[AGENT].file('/etc/systemd/system/k3s.service').exists


@pytest.mark.parametrize('name', SERVERS + (AGENT,))
def test_images_pinned_on_every_node(hosts, name):
    out = hosts[name].check_output(CTR + 'images ls')
    rows = dict((line.split()[0], line.split()[-1]) for line in out.splitlines()[1:] if line.strip())
    for ref in IMAGES:
        assert 'io.cri-containerd.pinned=pinned' in rows[ref].split(','), out


def test_ha_rerun_restarts_nothing(hosts, grown):
    before = main_pids(hosts, SERVERS + (AGENT,))
    run = converge(grown, timeout=1200)
    assert run.rc == 0, run.tail()
    for name in SERVERS + (AGENT,):
        assert run.stats()[name]['changed'] == 0, (name, run.stats()[name])
    assert main_pids(hosts, SERVERS + (AGENT,)) == before
