"""Verifier for the k3s scenario: a real k3s v1.22.5+k3s1 server from the bundle (tests/support/testbundle.py --k3s).

Host: k3s-server-1 (deploy + k3s_server). Converge ran verify, distribute and playbooks/k3s.yml.
"""
import json
import os
import sys
import time

import pytest

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import molecule_hosts, run_playbook  # noqa: E402

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERGE = os.path.join(SCENARIO, 'converge.yml')
SERVER = 'k3s-server-1'
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
def host():
    return molecule_hosts()[SERVER]


def kubectl(host, *args):
    return host.check_output('k3s kubectl --kubeconfig %s %s' % (KUBECONFIG, ' '.join(args)))


def test_k3s_is_the_bundles_binary_and_runs(host):
    assert host.file('/usr/local/bin/k3s').mode == 0o755
    assert 'v1.22.5+k3s1' in host.check_output('k3s --version')
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
    local = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'k3s-token')
    assert oct(os.stat(local).st_mode & 0o777) == '0o600'
    with open(local) as handle:
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
    run = run_playbook(CONVERGE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=900)
    assert run.rc == 0, run.tail()
    stats = run.stats()[SERVER]
    assert stats['changed'] == 0 and stats['failures'] == 0, stats
    assert host.check_output('systemctl show -p MainPID --value k3s') == pid
    assert host.check_output('systemctl show -p ExecMainStartTimestamp --value k3s') == started
