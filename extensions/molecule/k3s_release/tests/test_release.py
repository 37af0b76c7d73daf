"""Verifier for the k3s_release scenario: an UPSTREAM k3s release from the bundle (tests/support/testbundle.py --k3s
<version> over release files), k3s-r1 server + deploy node, k3s-r2 agent, the embedded registry mirror on.

What the test bed's v1.21/v1.22 builds cannot show: the release's version and its own airgap images, registries.yaml
rendered into containerd's certs.d hosts.toml files (k3s >= 1.26), the embedded registry mirror, images pinned as
CRI reports it (containerd >= 1.7), nothing in agent/images (so no .cache.json and no re-import at start).
"""
import json
import os
import sys
import time

import pytest
import yaml

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import molecule_hosts, run_playbook  # noqa: E402

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERGE = os.path.join(SCENARIO, 'converge.yml')
SERVER, AGENT = 'k3s-r1', 'k3s-r2'
NODES = (SERVER, AGENT)
BUNDLE = '/opt/ferry/bundles/ferry-k3s-release'
KUBECONFIG = '/etc/ferry/k3s/admin.kubeconfig'
CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d'
BUSYBOX = 'docker.io/rancher/mirrored-library-busybox'
WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: httpd
          image: %s
          imagePullPolicy: Never
          command: [sh, -c, "mkdir -p /www && echo ferry k3s release > /www/index.html && exec httpd -f -p 8080 -h /www"]
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
def manifest(hosts):
    return json.loads(hosts[SERVER].file(BUNDLE + '/manifest.json').content_string)


@pytest.fixture(scope='module')
def refs(manifest):
    return sorted(image['ref'] for image in manifest['images'])


def registry_of(ref):
    first = ref.split('/', 1)[0]
    return first if '/' in ref and ('.' in first or ':' in first or first == 'localhost') else 'docker.io'


def service(name):
    return 'k3s-agent' if name == AGENT else 'k3s'


def kubectl(host, *args):
    return host.check_output('k3s kubectl --kubeconfig %s %s' % (KUBECONFIG, ' '.join(args)))


def test_k3s_is_the_releases_binary(hosts, manifest):
    [artifact] = [a for a in manifest['artifacts'] if a['name'] == 'k3s' and a['arch'] == 'x86_64']
    for name in NODES:
        host = hosts[name]
        assert 'k3s version v%s ' % artifact['version'].lstrip('v') in host.check_output('k3s --version')
        assert host.check_output('sha256sum /usr/local/bin/k3s').split()[0] == artifact['sha256']
        assert host.service(service(name)).is_running


def test_both_nodes_ready(hosts):
    nodes = json.loads(kubectl(hosts[SERVER], 'get', 'nodes', '-o', 'json'))['items']
    ready = dict((n['metadata']['name'], [c['status'] for c in n['status']['conditions'] if c['type'] == 'Ready'][0])
                 for n in nodes)
    assert ready == {SERVER: 'True', AGENT: 'True'}


def test_embedded_registry_mirror_on_the_server_and_every_nodes_registries(hosts, refs):
    config = yaml.safe_load(hosts[SERVER].file('/etc/rancher/k3s/config.yaml').content_string)
    assert config.get('embedded-registry') is True, config
    wanted = sorted(set(registry_of(ref) for ref in refs))
    for name in NODES:
        registries = hosts[name].file('/etc/rancher/k3s/registries.yaml')
        assert registries.mode == 0o600
        assert sorted(yaml.safe_load(registries.content_string)['mirrors']) == wanted, (name, registries.content_string)


def test_registries_rendered_into_certs_d_hosts_toml(hosts, refs):
    """k3s >= 1.26 writes registries.yaml as containerd hosts.toml files; the embedded mirror is an endpoint there."""
    for name in NODES:
        for registry in sorted(set(registry_of(ref) for ref in refs)):
            hosts_toml = hosts[name].file('%s/%s/hosts.toml' % (CERTS_D, registry))
            assert hosts_toml.exists, (name, registry, hosts[name].run('find %s' % CERTS_D).stdout)


@pytest.mark.parametrize('name', NODES)
def test_bundle_images_pinned_as_cri_reports_them(hosts, refs, name):
    images = json.loads(hosts[name].check_output('k3s crictl images -o json'))['images']
    by_tag = dict((tag, image) for image in images for tag in image.get('repoTags') or [])
    for ref in refs:
        assert ref in by_tag, (name, ref, sorted(by_tag))
        assert by_tag[ref].get('pinned') is True, (name, ref, by_tag[ref])


@pytest.mark.parametrize('name', NODES)
def test_nothing_in_the_agent_images_dir(hosts, name):
    """Images go in through image_load, so k3s has nothing to import at start (no .cache.json question)."""
    host = hosts[name]
    assert not host.file('/var/lib/rancher/k3s/agent/images').exists or \
        host.check_output('ls -A /var/lib/rancher/k3s/agent/images') == ''


def test_a_deployment_of_a_bundle_image_answers_through_a_service(hosts, refs):
    busybox = [ref for ref in refs if ref.startswith(BUSYBOX + ':')]
    if not busybox:
        pytest.skip('the release airgap archive holds no %s image to run a web server with (tags: %s)'
                    % (BUSYBOX, ', '.join(refs)))
    host = hosts[SERVER]
    host.check_output("cat > /tmp/web.yaml <<'EOF'\n%s\nEOF" % (WEB % busybox[0]).strip())
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
    assert answer.stdout.strip() == 'ferry k3s release', answer.stderr


def test_rerun_changes_and_restarts_nothing(hosts):
    def main_pids():
        return dict((name, hosts[name].check_output('systemctl show -p MainPID --value %s' % service(name)))
                    for name in NODES)

    before = main_pids()
    run = run_playbook(CONVERGE, os.environ['MOLECULE_INVENTORY_FILE'], timeout=900)
    assert run.rc == 0, run.tail()
    for name in NODES:
        assert run.stats()[name]['changed'] == 0, (name, run.stats()[name])
    assert main_pids() == before
