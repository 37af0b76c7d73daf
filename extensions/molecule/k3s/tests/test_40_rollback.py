"""The cluster rollback (playbooks/cluster_rollback.yml) from v1.22.5 back to v1.21.8 and the snapshot test_30_upgrade
kept on the deploy node.

Refusals first, each changing nothing: no confirmation, no backup, a backup whose binary differs from its record.
Then the rollback: every node on v1.21.8 and Ready, 3 etcd members again, the web Deployment (made before the
snapshot) answering, a ConfigMap made after the snapshot gone, the cluster token unchanged. Then install.yml with the
1.0.0 bundle brings the hosts' copies back and restarts nothing.
"""
import json
import os
import sys
import time

import pytest

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import molecule_hosts, run_playbook, write_inventory  # noqa: E402

ROLLBACK = os.path.join(PROJECT, 'playbooks', 'cluster_rollback.yml')
CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'converge.yml')
SERVERS = ('k3s-s1', 'k3s-s2', 'k3s-s3')
AGENT = 'k3s-a1'
NODES = SERVERS + (AGENT,)
DEPLOY = 'k3s-s1'
BACKUPS = '/var/lib/ferry/k3s-backups'
KUBECONFIG = '/etc/ferry/k3s/admin.kubeconfig'
OLD_SHA = 'bdc85358ee4531a67f636ead310fd5a03e61e47062fc4c75b58f5dd014f6df55'  # k3s v1.21.8+k3s1
NEW_SHA = 'b59264add927b3b6a4f04233429e67fd95101a37578f3199628fa94e1ab40c66'  # k3s v1.22.5+k3s1


@pytest.fixture(scope='module')
def hosts():
    return molecule_hosts()


@pytest.fixture(scope='module')
def grown(tmp_path_factory):
    return write_inventory(tmp_path_factory.mktemp('grown'), {'k3s_server': list(SERVERS[1:]), 'k3s_agent': [AGENT]})


def service(name):
    return 'k3s-agent' if name == AGENT else 'k3s'


def main_pids(hosts):
    return dict((name, hosts[name].check_output('systemctl show -p MainPID --value %s' % service(name))) for name in NODES)


def binary_shas(hosts):
    return dict((name, hosts[name].check_output('sha256sum /usr/local/bin/k3s').split()[0]) for name in NODES)


def kubectl(host, *args):
    return host.check_output('k3s kubectl --kubeconfig %s %s' % (KUBECONFIG, ' '.join(args)))


def rollback(grown, extra_vars=None, timeout=2400):
    return run_playbook(ROLLBACK, os.environ['MOLECULE_INVENTORY_FILE'], timeout=timeout, extra_vars=extra_vars,
                        args=('-i', grown))


def the_backup(hosts):
    names = hosts[DEPLOY].check_output('ls -1 %s' % BACKUPS).split()
    assert len(names) == 1, names
    return '%s/%s' % (BACKUPS, names[0])


def assert_refused_unchanged(run, hosts, pids, text):
    assert run.rc != 0
    assert text in run.stdout, run.tail()
    for name, stats in run.stats().items():
        assert stats['changed'] == 0, (name, stats)
    assert main_pids(hosts) == pids
    assert set(binary_shas(hosts).values()) == {NEW_SHA}


@pytest.fixture(scope='module')
def state_before(hosts):
    """After the snapshot: a ConfigMap the restore must drop; the tokens the restore must keep."""
    kubectl(hosts[DEPLOY], 'create', 'configmap', 'made-after-the-snapshot', '--from-literal=when=after')
    return {'cluster_token': hosts[DEPLOY].check_output('sha256sum /var/lib/rancher/k3s/server/token').split()[0],
            'tokens': dict((name, hosts[name].check_output('sha256sum /etc/rancher/k3s/token').split()[0]) for name in NODES)}


def test_the_cluster_runs_v1_22_5_with_a_backup(hosts, state_before):
    assert set(binary_shas(hosts).values()) == {NEW_SHA}
    assert hosts[DEPLOY].file(the_backup(hosts) + '/record.json').exists


def test_without_confirmation_it_says_what_it_would_do_and_changes_nothing(hosts, grown, state_before):
    pids = main_pids(hosts)
    run = rollback(grown)
    assert_refused_unchanged(run, hosts, pids, 'Nothing was changed. The cluster rollback would restore %s:%s: k3s '
                             'v1.21.8+k3s1 and the etcd snapshot ferry-upgrade-' % (DEPLOY, the_backup(hosts)))
    assert ('It STOPS k3s on every node (k3s-s1, k3s-s2, k3s-s3, k3s-a1), and every change made to the cluster since '
            'the snapshot is lost. To go on, run again with -e k3s_rollback_confirm=yes.') in run.stdout


def test_no_backup_is_refused(hosts, grown, state_before):
    pids = main_pids(hosts)
    run = rollback(grown, {'k3s_rollback_confirm': 'yes', 'k3s_rollback_backup_root': '/var/lib/ferry/no-backups'})
    assert_refused_unchanged(run, hosts, pids, 'There is no k3s backup in k3s-s1:/var/lib/ferry/no-backups '
                             '(k3s_rollback_backup_root): upgrade.yml makes one before it changes a k3s version. '
                             'Nothing was changed.')


def test_a_backup_whose_binary_differs_from_its_record_is_refused(hosts, grown, state_before):
    deploy = hosts[DEPLOY]
    deploy.check_output('rm -rf /root/tampered && cp -a %s /root/tampered && echo x >> /root/tampered/k3s-x86_64' % the_backup(hosts))
    pids = main_pids(hosts)
    try:
        run = rollback(grown, {'k3s_rollback_confirm': 'yes', 'k3s_rollback_backup': '/root/tampered'})
    finally:
        deploy.check_output('rm -rf /root/tampered')
    assert_refused_unchanged(run, hosts, pids, 'WARNING: in the backup k3s-s1:/root/tampered, k3s-x86_64 has sha256 ')
    assert 'its record.json says %s. The backup is not restored' % OLD_SHA in run.stdout


def test_a_backup_without_its_record_is_refused(hosts, grown, state_before):
    deploy = hosts[DEPLOY]
    deploy.check_output('rm -rf /root/incomplete && cp -a %s /root/incomplete && rm /root/incomplete/record.json' % the_backup(hosts))
    pids = main_pids(hosts)
    try:
        run = rollback(grown, {'k3s_rollback_confirm': 'yes', 'k3s_rollback_backup': '/root/incomplete'})
    finally:
        deploy.check_output('rm -rf /root/incomplete')
    assert_refused_unchanged(run, hosts, pids, 'The backup k3s-s1:/root/incomplete is incomplete: it has no readable record.json')


@pytest.fixture(scope='module')
def rolled_back(hosts, grown, state_before):
    run = rollback(grown, {'k3s_rollback_confirm': 'yes'})
    return run


def test_the_rollback_succeeds(rolled_back):
    assert rolled_back.rc == 0, rolled_back.tail()
    print('rollback took %.0f s' % rolled_back.wall)


def test_every_node_runs_v1_21_8_and_is_ready(hosts, rolled_back):
    assert set(binary_shas(hosts).values()) == {OLD_SHA}
    for name in NODES:
        assert 'v1.21.8+k3s1' in hosts[name].check_output('k3s --version')
        assert hosts[name].service(service(name)).is_running
    nodes = json.loads(kubectl(hosts[DEPLOY], 'get', 'nodes', '-o', 'json'))['items']
    assert dict((n['metadata']['name'], n['status']['nodeInfo']['kubeletVersion']) for n in nodes) == \
        dict((name, 'v1.21.8+k3s1') for name in NODES)
    ready = dict((n['metadata']['name'], [c['status'] for c in n['status']['conditions'] if c['type'] == 'Ready'][0])
                 for n in nodes)
    assert ready == dict((name, 'True') for name in NODES)
    etcd = dict((n['metadata']['name'], 'node-role.kubernetes.io/etcd' in n['metadata']['labels']) for n in nodes)
    assert etcd == {'k3s-s1': True, 'k3s-s2': True, 'k3s-s3': True, AGENT: False}


def test_the_snapshot_was_restored(hosts, rolled_back, state_before):
    deploy = hosts[DEPLOY]
    names = kubectl(deploy, 'get', 'configmaps', '-o', "jsonpath='{.items[*].metadata.name}'").split()
    assert 'made-after-the-snapshot' not in names, names
    kubectl(deploy, 'rollout', 'status', 'deployment/web', '--timeout=180s')
    ip = kubectl(deploy, 'get', 'service', 'web', '-o', "jsonpath='{.spec.clusterIP}'")
    deadline = time.time() + 90
    while True:
        answer = deploy.run('python3 -c "import urllib.request, sys; '
                            'print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" http://%s/' % ip)
        if answer.rc == 0 or time.time() > deadline:
            break
        time.sleep(2)
    assert answer.stdout.strip() == 'ferry k3s web', answer.stderr


def test_the_tokens_are_unchanged_and_never_printed(hosts, rolled_back, state_before):
    assert hosts[DEPLOY].check_output('sha256sum /var/lib/rancher/k3s/server/token').split()[0] == state_before['cluster_token']
    for name in NODES:
        assert hosts[name].check_output('sha256sum /etc/rancher/k3s/token').split()[0] == state_before['tokens'][name]
    secret = hosts[DEPLOY].check_output('cat /var/lib/rancher/k3s/server/token').strip().split(':')[-1]
    assert secret not in rolled_back.stdout + rolled_back.stderr


def test_old_etcd_data_is_kept_aside_and_the_staged_files_are_gone(hosts, rolled_back):
    for name in SERVERS:
        assert hosts[name].check_output('ls -d /var/lib/rancher/k3s/server/db.ferry-rollback-* | wc -l') == '1', name
    for name in NODES:
        assert not hosts[name].file('/var/lib/ferry/k3s-rollback').exists, name


def test_the_operator_is_told_about_the_newer_bundle(rolled_back):
    assert ('The deploy node still holds the newer bundle ferry-k3s 1.1.0 (/opt/ferry/bundles/ferry-k3s-1.1.0, k3s '
            '1.22.5+k3s1)') in rolled_back.stdout
    assert 'install.yml or upgrade.yml with that bundle would upgrade the cluster again' in rolled_back.stdout


def test_install_with_the_old_bundle_afterwards_restarts_no_k3s(hosts, grown, rolled_back):
    pids = main_pids(hosts)
    run = run_playbook(CONVERGE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=1800, args=('-i', grown))
    assert run.rc == 0, run.tail()
    for task in run.tasks():
        for name, result in task['hosts'].items():
            if result.get('changed'):
                assert task['task']['name'].startswith('ferry.airgap.distribute : '), (task['task']['name'], name)
    assert main_pids(hosts) == pids
