"""The k3s cluster upgrade (playbooks/upgrade.yml) v1.21.8 -> v1.22.5 on the HA cluster test_10_install left.

test_10_install leaves 3 servers (k3s-s1 first, k3s-s2, k3s-s3) and 1 agent (k3s-a1) on k3s v1.21.8+k3s1 with the
busybox web Deployment and Service. Here, in file order: a bundle declaring a skipped minor (1.23.0) is refused
and nothing changes; a node lacking the new images stops the run before any restart; the upgrade with the 1.1.0
bundle (k3s v1.22.5): snapshot kept on the deploy node, servers one at a time, then the agent, the web answering
throughout; a rerun restarts nothing and takes no snapshot; the 1.0.0 bundle is then refused as a downgrade.
test_40_rollback goes back to v1.21.8 from the snapshot taken here.
"""
import json
import os
import sys
import time

import pytest

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import json_seconds, molecule_hosts, run_playbook, write_inventory  # noqa: E402

UPGRADE = os.path.join(PROJECT, 'playbooks', 'upgrade.yml')
SERVERS = ('k3s-s1', 'k3s-s2', 'k3s-s3')
AGENT = 'k3s-a1'
NODES = SERVERS + (AGENT,)
DEPLOY = 'k3s-s1'
# molecule.yml: bundle_dir and k3s_test_*_bundle_dir of k3s-s1 (prepare.yml copies them there)
INSTALL_BUNDLE = '/opt/ferry/bundles/ferry-k3s'
UPGRADE_BUNDLE = '/opt/ferry/bundles/ferry-k3s-1.1.0'
SKIP_BUNDLE = '/opt/ferry/bundles/ferry-k3s-1.2.0'
BACKUPS = '/var/lib/ferry/k3s-backups'
KUBECONFIG = '/etc/ferry/k3s/admin.kubeconfig'
OLD_SHA = 'bdc85358ee4531a67f636ead310fd5a03e61e47062fc4c75b58f5dd014f6df55'  # k3s v1.21.8+k3s1 (artifacts README)
NEW_SHA = 'b59264add927b3b6a4f04233429e67fd95101a37578f3199628fa94e1ab40c66'  # k3s v1.22.5+k3s1
BUSYBOX = 'docker.io/library/busybox:local-debian'
PROBER = """
import sys, time, urllib.request
url, out = sys.argv[1], sys.argv[2]
with open(out, 'a', buffering=1) as log:
    while True:
        start = time.time()
        try:
            body = urllib.request.urlopen(url, timeout=2).read().decode().strip()
            log.write('%.3f ok %s\\n' % (start, body))
        except Exception as exc:
            log.write('%.3f fail %s\\n' % (start, str(exc).replace('\\n', ' ')))
        time.sleep(max(0, 1 - (time.time() - start)))
"""
PROBE_HOSTS = ('k3s-s2', AGENT)


@pytest.fixture(scope='module')
def hosts():
    return molecule_hosts()


def service(name):
    return 'k3s-agent' if name == AGENT else 'k3s'


def main_pids(hosts, names=NODES):
    return dict((name, hosts[name].check_output('systemctl show -p MainPID --value %s' % service(name))) for name in names)


def unit_start(host, unit):
    return int(host.check_output('date -u -d "$(systemctl show -p ExecMainStartTimestamp --value %s)" +%%s' % unit))


def binary_shas(hosts):
    return dict((name, hosts[name].check_output('sha256sum /usr/local/bin/k3s').split()[0]) for name in NODES)


def copy_shas(hosts):
    """sha256 of each host's distributed copy of the k3s binary (/var/lib/ferry/bundle)."""
    return dict((name, hosts[name].check_output('sha256sum /var/lib/ferry/bundle/artifacts/x86_64/k3s/k3s').split()[0])
                for name in NODES)


def backups(host):
    return host.check_output('ls -1 %s 2>/dev/null || true' % BACKUPS).split()


def kubectl(host, *args):
    return host.check_output('k3s kubectl --kubeconfig %s %s' % (KUBECONFIG, ' '.join(args)))


@pytest.fixture(scope='module')
def grown(tmp_path_factory):
    return write_inventory(tmp_path_factory.mktemp('grown'), {'k3s_server': list(SERVERS[1:]), 'k3s_agent': [AGENT]})


def upgrade(bundle, inventory, timeout=2400, args=()):
    return run_playbook(UPGRADE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=timeout,
                        extra_vars={'bundle_dir': bundle}, args=('-i', inventory) + tuple(args))


def assert_nothing_changed(run, hosts, pids, shas):
    for name in NODES:
        assert run.stats()[name]['changed'] == 0, (name, run.stats()[name])
    assert main_pids(hosts) == pids
    assert binary_shas(hosts) == shas


def test_the_cluster_runs_v1_21_8_before(hosts):
    assert set(binary_shas(hosts).values()) == {OLD_SHA}
    assert backups(hosts[DEPLOY]) == []


def test_a_skipped_minor_is_refused_before_anything_changes(hosts, grown):
    pids, shas, copies = main_pids(hosts), binary_shas(hosts), copy_shas(hosts)
    run = upgrade(SKIP_BUNDLE, grown)
    assert run.rc != 0
    for name in NODES:
        assert ('%s: k3s v1.21.8+k3s1 runs, the bundle carries v1.23.0+k3s1: that skips minor version 1.22, refused. '
                'Nothing was changed; upgrade one minor version at a time: first with a bundle carrying k3s 1.22.x, '
                'then this one' % name) in run.stdout, run.tail()
    assert_nothing_changed(run, hosts, pids, shas)
    # refused before distribute: the hosts' copies are still the 1.0.0 bundle's
    assert copy_shas(hosts) == copies
    assert backups(hosts[DEPLOY]) == []


def test_a_node_lacking_the_new_images_stops_the_run_before_any_restart(hosts, tmp_path):
    # k3s-a1 loses an image and is told not to load the new bundle's (k3s_upgrade_preload: false)
    hosts[AGENT].check_output('k3s ctr -a /run/k3s/containerd/containerd.sock -n k8s.io images rm %s' % BUSYBOX)
    inventory = write_inventory(tmp_path, {'k3s_server': list(SERVERS[1:]), 'k3s_agent': [AGENT]},
                                hostvars={AGENT: {'k3s_upgrade_preload': False}})
    pids, shas = main_pids(hosts), binary_shas(hosts)
    run = upgrade(UPGRADE_BUNDLE, inventory)
    assert run.rc != 0
    assert ("The new bundle's images are not all in k3s's containerd (/run/k3s/containerd/containerd.sock) on 1 "
            "node(s): k3s-a1 lacks %s. No k3s was restarted and no snapshot was taken" % BUSYBOX) in run.stdout, run.tail()
    assert not run.task_results('ferry.airgap.k3s : Restart the unit')
    assert main_pids(hosts) == pids
    assert binary_shas(hosts) == shas
    assert backups(hosts[DEPLOY]) == []
    # k3s-a1 still lacks it: the gate only looked
    assert BUSYBOX not in hosts[AGENT].check_output('k3s ctr -a /run/k3s/containerd/containerd.sock -n k8s.io images ls -q')


@pytest.fixture(scope='module')
def probers(hosts):
    """A loop on k3s-s2 and k3s-a1 asking the web Service's ClusterIP every second, into /root/web-prober.log."""
    ip = kubectl(hosts[DEPLOY], 'get', 'service', 'web', '-o', "jsonpath='{.spec.clusterIP}'")
    for name in PROBE_HOSTS:
        host = hosts[name]
        host.check_output("cat > /root/web-prober.py <<'EOF'\n%s\nEOF" % PROBER.strip())
        host.run('systemctl stop ferry-web-prober; rm -f /root/web-prober.log')
        host.check_output('systemd-run --unit=ferry-web-prober python3 /root/web-prober.py http://%s/ /root/web-prober.log' % ip)
    time.sleep(5)
    yield
    for name in PROBE_HOSTS:
        hosts[name].run('systemctl stop ferry-web-prober')


def probe_counts(host):
    lines = host.check_output('cat /root/web-prober.log').splitlines()
    ok = [line for line in lines if ' ok ferry k3s web' in line]
    return len(ok), [line for line in lines if line not in ok]


@pytest.fixture(scope='module')
def upgraded(hosts, grown, probers):
    before = main_pids(hosts)
    run = upgrade(UPGRADE_BUNDLE, grown)
    return run, before


def test_the_upgrade_succeeds(upgraded):
    run = upgraded[0]
    assert run.rc == 0, run.tail()
    print('upgrade took %.0f s' % run.wall)


def test_every_node_runs_v1_22_5_and_restarted_once(hosts, upgraded):
    run, before = upgraded
    assert set(binary_shas(hosts).values()) == {NEW_SHA}
    after = main_pids(hosts)
    for name in NODES:
        assert after[name] != before[name], name
        assert 'v1.22.5+k3s1' in hosts[name].check_output('k3s --version')
    nodes = json.loads(kubectl(hosts[DEPLOY], 'get', 'nodes', '-o', 'json'))['items']
    kubelets = dict((n['metadata']['name'], n['status']['nodeInfo']['kubeletVersion']) for n in nodes)
    assert kubelets == dict((name, 'v1.22.5+k3s1') for name in NODES)
    ready = dict((n['metadata']['name'], [c['status'] for c in n['status']['conditions'] if c['type'] == 'Ready'][0])
                 for n in nodes)
    assert ready == dict((name, 'True') for name in NODES)


def ready_ends(run, task_name):
    """{host: end time} of each (per-batch) task entry whose name contains task_name."""
    ends = {}
    for task in run.tasks():
        if task_name in task['task']['name']:
            for name in task['hosts']:
                ends[name] = json_seconds(task['task']['duration']['end'])
    return ends


def test_servers_restarted_one_at_a_time_each_healthy_before_the_next_then_the_agent(hosts, upgraded):
    run = upgraded[0]
    # the role's waits (tasks/wait_ready.yml): a server's /readyz, every node's Ready
    healthy = ready_ends(run, "ferry.airgap.k3s : Wait until this server's API server and etcd are healthy")
    ready = ready_ends(run, 'ferry.airgap.k3s : Wait until this node is Ready')
    assert set(healthy) >= set(SERVERS) and AGENT in ready, (healthy, ready)
    order = list(SERVERS) + [AGENT]
    for previous, name in zip(order, order[1:]):
        done = healthy.get(previous, ready[previous])
        started = unit_start(hosts[name], service(name))
        assert started >= int(done), (previous, done, name, started)


def test_the_snapshot_token_and_old_binary_are_kept_on_the_deploy_node(hosts, upgraded):
    run = upgraded[0]
    deploy = hosts[DEPLOY]
    names = backups(deploy)
    assert len(names) == 1 and names[0].endswith('-v1.21.8+k3s1'), names
    top = '%s/%s' % (BACKUPS, names[0])
    for path in (BACKUPS, top):
        assert deploy.file(path).mode == 0o700 and deploy.file(path).user == 'root', path
    record = json.loads(deploy.file(top + '/record.json').content_string)
    assert record['old_version'] == 'v1.21.8+k3s1'
    assert record['new_versions'] == {'x86_64': '1.22.5+k3s1'}
    assert record['first_server'] == 'k3s-s1' and record['servers'] == list(SERVERS) and record['agents'] == [AGENT]
    assert record['binaries'] == {'x86_64': 'k3s-x86_64'}
    assert record['snapshot'].startswith('ferry-upgrade-') and '-k3s-s1-' in record['snapshot']
    assert sorted(record['files']) == sorted([record['snapshot'], 'token', 'k3s-x86_64'])
    listed = deploy.check_output('ls -1 %s' % top).split()
    assert sorted(listed) == sorted(list(record['files']) + ['record.json'])
    for name in listed:
        entry = deploy.file('%s/%s' % (top, name))
        assert entry.mode == 0o600 and entry.user == 'root', name
    for name, sha in record['files'].items():
        assert deploy.check_output('sha256sum %s/%s' % (top, name)).split()[0] == sha, name
    assert record['files']['k3s-x86_64'] == OLD_SHA
    # the token is the first server's cluster token, and it never reached the output
    token = deploy.check_output('cat %s/token' % top).strip()
    assert token == deploy.check_output('cat /var/lib/rancher/k3s/server/token').strip()
    assert token not in run.stdout and token.split(':')[-1] not in run.stdout + run.stderr
    # the snapshot is the one k3s saved on the first server
    assert deploy.file('/var/lib/rancher/k3s/server/db/snapshots/' + record['snapshot']).exists


def test_the_web_answered_throughout(hosts, upgraded):
    for name in PROBE_HOSTS:
        ok, failed = probe_counts(hosts[name])
        print('%s: %d answers, %d failures %s' % (name, ok, len(failed), failed[:5]))
        assert ok >= upgraded[0].wall * 0.5, (name, ok, upgraded[0].wall)
        assert failed == [], (name, failed[:20])


def test_every_node_holds_the_images_again(hosts, upgraded):
    for name in NODES:
        assert BUSYBOX in hosts[name].check_output('k3s ctr -a /run/k3s/containerd/containerd.sock -n k8s.io images ls -q')


def test_a_rerun_restarts_nothing_and_takes_no_new_snapshot(hosts, grown, upgraded):
    pids, count = main_pids(hosts), len(backups(hosts[DEPLOY]))
    run = upgrade(UPGRADE_BUNDLE, grown)
    assert run.rc == 0, run.tail()
    for name in NODES:
        assert run.stats()[name]['changed'] == 0, (name, run.stats()[name])
    assert main_pids(hosts) == pids
    assert len(backups(hosts[DEPLOY])) == count
    assert 'No k3s version changes on any node: no snapshot taken.' in run.stdout


def test_a_downgrade_is_refused_and_nothing_changes(hosts, grown, upgraded):
    pids, shas = main_pids(hosts), binary_shas(hosts)
    run = upgrade(INSTALL_BUNDLE, grown)
    assert run.rc != 0
    for name in NODES:
        assert ('%s: k3s v1.22.5+k3s1 runs, the bundle carries v1.21.8+k3s1: a downgrade, refused. Nothing was changed; '
                'go back with playbooks/cluster_rollback.yml' % name) in run.stdout, run.tail()
    assert_nothing_changed(run, hosts, pids, shas)
