"""Verifier for the containerd scenario.

The hosts were converged with the role from the 1.0.0 test bundle (real Debian binaries,
tests/support/testbundle.py). Checks the install on both arches, runs a container on amd64, then
upgrades amd64 to the 1.1.0 test bundle, which carries a newer Debian containerd build, while that
container runs.
"""
import hashlib
import json
import os
import sys
import tarfile
import time

import pytest

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import molecule_hosts, run_playbook  # noqa: E402

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(PROJECT, 'tests', 'output', 'cache')
BUNDLES = os.path.join(PROJECT, 'tests', 'output', 'testbundle')
ARCH = {'ctrd-amd64': 'x86_64', 'ctrd-arm64': 'aarch64'}
GOARCH = {'x86_64': 'amd64', 'aarch64': 'arm64'}
ELF_MACHINE = {'x86_64': 62, 'aarch64': 183}
HOSTS = sorted(ARCH)


def _json(path):
    with open(path) as handle:
        return json.load(handle)


PINS = _json(os.path.join(CACHE, 'versions.json'))


def manifest(version):
    return _json(os.path.join(BUNDLES, version, 'manifest.json'))


def artifact(version, arch, name):
    return [a for a in manifest(version)['artifacts'] if a['arch'] == arch and a['name'] == name][0]


def member_sha256(version, arch, name, member):
    path = os.path.join(BUNDLES, version, artifact(version, arch, name)['path'])
    with tarfile.open(path) as tar:
        return hashlib.sha256(tar.extractfile(member).read()).hexdigest()


@pytest.fixture(scope='module')
def hosts():
    return molecule_hosts()


def sh(host, command):
    result = host.run(command)
    assert result.rc == 0, '%s: rc %s\n%s\n%s' % (command, result.rc, result.stdout, result.stderr)
    return result.stdout


def web(host):
    code = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/', timeout=5).read().decode())"
    for dummy in range(20):
        result = host.run("python3 -c \"%s\"" % code)
        if result.rc == 0:
            return result.stdout
        time.sleep(0.5)
    return result.stderr


@pytest.mark.parametrize('name', HOSTS)
def test_service_active_and_enabled(hosts, name):
    service = hosts[name].service('containerd')
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize('name', HOSTS)
def test_binaries_are_the_bundles_for_the_host_arch(hosts, name):
    host, arch = hosts[name], ARCH[name]
    paths = ['/usr/local/bin/containerd', '/usr/local/bin/containerd-shim-runc-v2', '/usr/local/bin/ctr',
             '/usr/local/sbin/runc', '/opt/cni/bin/bridge', '/opt/cni/bin/host-local', '/opt/cni/bin/loopback']
    # ELF e_machine: the kernel of this test bed runs amd64 code even in the arm64 (qemu) host, so a
    # wrong-arch binary would run there: check the header instead.
    machines = sh(host, 'for f in %s; do od -An -tu2 -j18 -N2 "$f"; done' % ' '.join(paths)).split()
    assert machines == [str(ELF_MACHINE[arch])] * len(paths)
    sums = dict(line.split()[::-1] for line in sh(host, 'sha256sum /usr/local/bin/containerd /usr/local/bin/ctr').splitlines())
    assert sums['/usr/local/bin/containerd'] == member_sha256('1.0.0', arch, 'containerd', 'bin/containerd')
    assert sums['/usr/local/bin/ctr'] == member_sha256('1.0.0', arch, 'containerd', 'bin/ctr')
    assert sh(host, 'stat -c %a:%U /usr/local/sbin/runc').strip() == '755:root'


@pytest.mark.parametrize('name', HOSTS)
def test_versions_and_the_daemon_answers(hosts, name):
    host = hosts[name]
    out = sh(host, 'containerd --version; runc --version; ctr version')
    assert PINS['containerd']['old'] in out.splitlines()[0]          # the 1.0.0 bundle's build
    assert 'commit: %s' % PINS['runc']['new'] in out
    server = out.split('Server:')[1]
    assert 'Revision: %s' % PINS['containerd']['old'] in server


def test_not_installed_with_a_package_manager(hosts):
    for host in hosts.values():
        assert host.run('dpkg-query -W containerd runc containernetworking-plugins').rc != 0


@pytest.mark.parametrize('name', HOSTS)
def test_config_toml_and_what_containerd_reads(hosts, name):
    host = hosts[name]
    config = host.file('/etc/containerd/config.toml').content_string
    assert 'version = 2' in config
    assert 'SystemdCgroup = true' in config
    assert 'sandbox_image = "ferry.test/pause:1.0"' in config
    assert 'config_path = "/etc/containerd/certs.d"' in config
    # The effective configuration: proves the TOML parses and the keys land where containerd looks.
    dump = sh(host, 'containerd --config /etc/containerd/config.toml config dump')
    assert 'sandbox_image = "ferry.test/pause:1.0"' in dump
    assert 'SystemdCgroup = true' in dump
    assert 'BinaryName = "/usr/local/sbin/runc"' in dump
    assert 'snapshotter = "overlayfs"' in dump
    assert 'bin_dir = "/opt/cni/bin"' in dump
    assert not host.file('/etc/cni/net.d/10-containerd-net.conflist').exists    # containerd_cni_config: false


@pytest.mark.parametrize('name', HOSTS)
def test_systemd_unit(hosts, name):
    out = sh(hosts[name], 'systemctl show containerd -p Delegate -p KillMode -p FragmentPath -p ExecStart -p LimitNOFILE')
    props = dict(line.split('=', 1) for line in out.splitlines())
    assert props['Delegate'] == 'yes'
    assert props['KillMode'] == 'process'
    assert props['FragmentPath'] == '/etc/systemd/system/containerd.service'
    assert 'path=/usr/local/bin/containerd' in props['ExecStart']


@pytest.mark.parametrize('name', HOSTS)
def test_local_fact(hosts, name):
    arch = ARCH[name]
    fact = json.loads(hosts[name].file('/etc/ansible/facts.d/ferry_containerd.fact').content_string)
    assert fact['revision'] == PINS['containerd']['old']
    assert fact['version'] == PINS['containerd']['old'].split('-')[0]
    assert fact['runc_version'] == PINS['runc']['new'].split('-')[0]
    assert fact['archive_sha256'] == artifact('1.0.0', arch, 'containerd')['sha256']
    assert fact['cni_archive_sha256'] == artifact('1.0.0', arch, 'cni-plugins')['sha256']
    assert fact['archive'] == '/var/lib/ferry/bundle/' + artifact('1.0.0', arch, 'containerd')['path']


@pytest.mark.parametrize('name', HOSTS)
def test_image_import(hosts, name):
    """The installed containerd imports the busybox web image for the host's platform."""
    host, goarch = hosts[name], GOARCH[ARCH[name]]
    host.ansible('copy', 'src=%s dest=/tmp/web.oci.tar mode=0644' % os.path.join(CACHE, 'images', '1.0', 'web-1.0.oci.tar'),
                 check=False, become=False)
    out = sh(host, 'ctr -n k8s.io images import --platform linux/%s /tmp/web.oci.tar && ctr -n k8s.io images ls -q' % goarch)
    assert 'ferry.test/web:1.0' in out.split()


def test_container_serves_on_amd64(hosts):
    host = hosts['ctrd-amd64']
    sh(host, 'ctr -n k8s.io run --net-host -d ferry.test/web:1.0 web-test')
    assert web(host).strip() == 'ferry web 1.0'


def run_upgrade(limit):
    return run_playbook(os.path.join(SCENARIO, 'upgrade.yml'), os.environ['MOLECULE_INVENTORY_FILE'],
                        {'ferry_test_version': '1.1.0'}, limit='%s,localhost' % limit)


@pytest.mark.skipif(PINS['containerd']['old'] == PINS['containerd']['new'],
                    reason='Debian offers only one containerd build: no real newer archive to upgrade to')
def test_upgrade_to_a_newer_containerd_keeps_running_containers(hosts):
    host = hosts['ctrd-amd64']
    if 'web-test' not in sh(host, 'ctr -n k8s.io tasks ls'):
        sh(host, 'ctr -n k8s.io run --net-host -d ferry.test/web:1.0 web-test')
    daemon_before = sh(host, 'systemctl show -p MainPID --value containerd').strip()
    task_before = sh(host, 'ctr -n k8s.io tasks ls').split('web-test')[1].split()[0]

    run = run_upgrade('ctrd-amd64')
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert run.stats()['ctrd-amd64']['changed'] > 0

    out = sh(host, 'containerd --version; ctr version')
    assert PINS['containerd']['new'] in out.splitlines()[0]
    assert 'Revision: %s' % PINS['containerd']['new'] in out.split('Server:')[1]
    assert sh(host, 'sha256sum /usr/local/bin/containerd').split()[0] == \
        member_sha256('1.1.0', 'x86_64', 'containerd', 'bin/containerd')
    assert sh(host, 'systemctl show -p MainPID --value containerd').strip() != daemon_before   # restarted
    assert host.service('containerd').is_running
    fact = json.loads(host.file('/etc/ansible/facts.d/ferry_containerd.fact').content_string)
    assert fact['revision'] == PINS['containerd']['new']
    assert fact['archive_sha256'] == artifact('1.1.0', 'x86_64', 'containerd')['sha256']
    # KillMode=process: the container (and its shim) lived through the restart.
    tasks = sh(host, 'ctr -n k8s.io tasks ls')
    assert tasks.split('web-test')[1].split()[:2] == [task_before, 'RUNNING']
    assert web(host).strip() == 'ferry web 1.0'

    again = run_upgrade('ctrd-amd64')
    assert again.rc == 0, again.stdout[-4000:]
    assert again.stats()['ctrd-amd64']['changed'] == 0
