"""Verifier for the runtime scenario: what install.yml left on the hosts, then the failing cases.

Hosts: rt-amd64-a (deploy + standalone), rt-amd64-b, rt-amd64-c (standalone),
rt-arm64 (standalone, qemu). The bundle is the test bundle built from Debian's containerd, runc
and CNI plugins and busybox images (tests/support/testbundle.py).
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
sys.path.insert(0, os.path.join(PROJECT, 'tests', 'support'))
from ferry_run import ansible, molecule_hosts, run_playbook, write_inventory  # noqa: E402

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = os.path.join(PROJECT, 'playbooks', 'install.yml')
LOAD = os.path.join(SCENARIO, 'load.yml')
TESTBUNDLE = os.path.join(PROJECT, 'tests', 'output', 'testbundle')
BUNDLE = os.path.join(TESTBUNDLE, '1.0.0')
CTR = 'ctr -n k8s.io '
AMD64 = ('rt-amd64-a', 'rt-amd64-b', 'rt-amd64-c')
ALL = AMD64 + ('rt-arm64',)
REFS = ['ferry.test/busybox:1.35', 'ferry.test/pause:1.0', 'ferry.test/web:1.0']


@pytest.fixture(scope='module')
def hosts():
    return molecule_hosts()


@pytest.fixture(scope='module')
def manifest():
    with open(os.path.join(BUNDLE, 'manifest.json')) as handle:
        return json.load(handle)


def blob(digest):
    with open(os.path.join(BUNDLE, 'images', 'blobs', 'sha256', digest.split(':', 1)[1]), 'rb') as handle:
        return json.load(handle)


def platform_layers(manifest, ref, platform):
    image = [i for i in manifest['images'] if i['ref'] == ref][0]
    return [layer['digest'] for layer in blob(image['platforms'][platform])['layers']]


def install(**extra):
    return run_playbook(INSTALL, os.environ['MOLECULE_INVENTORY_FILE'], extra or None, timeout=1200)


def image_digests(host):
    """{ref: target digest} of the k8s.io namespace."""
    out = host.check_output(CTR + 'images ls')
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return dict((row[0], row[2]) for row in rows)


# --------------------------------------------------------------------------- what install left

@pytest.mark.parametrize('name', ALL)
def test_containerd_is_active_from_the_bundle(hosts, name):
    host = hosts[name]
    assert host.service('containerd').is_running
    assert host.service('containerd').is_enabled
    assert host.file('/usr/local/bin/containerd').exists
    assert not host.exists('dpkg-query') or host.run('dpkg-query -W containerd').rc != 0
    fact = json.loads(host.file('/etc/ansible/facts.d/ferry_containerd.fact').content_string)
    assert fact['version'].startswith('1.6.20')


@pytest.mark.parametrize('name', ALL)
def test_every_image_is_present_for_the_host_platform_only(hosts, manifest, name):
    host = hosts[name]
    platform, other = ('linux/arm64', 'linux/amd64') if name == 'rt-arm64' else ('linux/amd64', 'linux/arm64')
    present = image_digests(host)
    for image in manifest['images']:
        assert present.get(image['ref']) == image['digest'], (image['ref'], present)
    content = host.check_output(CTR + 'content ls -q')
    for ref in REFS:
        mine = platform_layers(manifest, ref, platform)
        for digest in mine:
            assert digest in content, (ref, platform, digest)
        # Layers of the other platform (those not byte-identical to one of ours) never reached the host.
        for digest in set(platform_layers(manifest, ref, other)) - set(mine):
            assert digest not in content, (ref, other, digest)
    # ferry.test/web's own layer arrived as a plain tar and is stored zstd (the busybox base stays gzip):
    # unpacked below on every host, arm64 included.
    web = [i for i in manifest['images'] if i['ref'] == 'ferry.test/web:1.0'][0]
    assert [layer['mediaType'].rsplit('+', 1)[-1] for layer in blob(web['platforms'][platform])['layers']] == [
        'gzip', 'zstd']
    # The host's own platform is complete and unpacked.
    check = host.check_output(CTR + 'images check')
    for ref in REFS:
        line = [row for row in check.splitlines() if row.startswith(ref + ' ')][0]
        assert 'complete' in line and line.split()[-1] == 'true', line


@pytest.mark.parametrize('name', ALL)
def test_host_mirror_holds_only_its_arch(hosts, name):
    host = hosts[name]
    arch, other = ('aarch64', 'x86_64') if name == 'rt-arm64' else ('x86_64', 'aarch64')
    assert host.file('/var/lib/ferry/bundle/artifacts/%s/containerd' % arch).is_directory
    assert not host.file('/var/lib/ferry/bundle/artifacts/%s' % other).exists


def test_a_container_from_a_loaded_image_serves_a_request(hosts):
    host = hosts['rt-amd64-c']
    host.run(CTR + 'task kill -s KILL ferry-verify-web; sleep 1; ' + CTR + 'containers rm ferry-verify-web')
    host.check_output(CTR + 'run -d --net-host ferry.test/web:1.0 ferry-verify-web')
    try:
        body = ''
        for _attempt in range(30):
            got = host.run("python3 -c \"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8080/', timeout=2).read().decode())\"")
            if got.rc == 0:
                body = got.stdout
                break
            time.sleep(1)
        assert 'ferry web 1.0' in body
    finally:
        host.run(CTR + 'task kill -s KILL ferry-verify-web; sleep 1; ' + CTR + 'containers rm ferry-verify-web')


def test_second_run_changes_nothing_and_moves_zero_bytes():
    run = install()
    assert run.rc == 0, run.stdout[-3000:]
    assert all(s['changed'] == 0 and s['failures'] == 0 for s in run.stats().values()), run.stats()
    loads = run.task_results("Load this host's images into containerd")
    assert set(loads) == set(ALL)
    for name, result in loads.items():
        assert result['bytes_moved'] == 0 and result['loaded'] == [] and not result['changed'], (name, result)
    # Nothing to pull: the server is not even started.
    assert not any(r.get('changed') for r in run.task_results('Start the bundle server on rt-amd64-a').values())
    plans = run.task_results('Find the files this host lacks')
    assert set(plans) == set(ALL)
    assert all(not r['fetched'] for r in plans.values()), plans


# --------------------------------------------------------------------------- failing cases

def test_corrupted_blob_fails_and_tags_nothing(hosts, manifest, tmp_path):
    host = hosts['rt-amd64-b']
    web_layer = platform_layers(manifest, 'ferry.test/web:1.0', 'linux/amd64')[-1]
    path = '/var/lib/ferry/bundle/images/blobs/sha256/' + web_layer.split(':', 1)[1]
    host.check_output(CTR + 'images rm --sync ferry.test/web:1.0')
    host.run(CTR + 'content rm ' + web_layer)   # containerd no longer holds it: it must come from the host's mirror
    assert web_layer not in host.check_output(CTR + 'content ls -q')
    original = host.check_output('sha256sum %s' % path).split()[0]
    # One flipped byte in the middle of the layer on the host.
    host.check_output("python3 -c \"f=open('%s','r+b');f.seek(100);b=f.read(1);f.seek(100);f.write(bytes([b[0]^1]));f.close()\"" % path)
    assert host.check_output('sha256sum %s' % path).split()[0] != original

    run = run_playbook(LOAD, write_inventory(tmp_path, {'standalone': ['rt-amd64-b']}), {'load_images': REFS})
    assert run.rc != 0
    result = run.task_results('Load images')['rt-amd64-b']
    msg = ' '.join(result['msg'].split())
    assert result['failed'] and 'is corrupt: expected %s, actual' % web_layer in msg and 'ferry.test/web:1.0' in msg, msg
    assert 'ferry.test/web:1.0' not in image_digests(host)
    assert not [ref for ref in image_digests(host) if 'staging' in ref]

    # install.yml repairs it: the mirror file's digest is wrong, so it is pulled again, then loaded.
    run = install()
    assert run.rc == 0, run.stdout[-3000:]
    assert host.check_output('sha256sum %s' % path).split()[0] == original
    assert image_digests(host)['ferry.test/web:1.0'] == [i for i in manifest['images'] if i['ref'] == 'ferry.test/web:1.0'][0]['digest']


def test_containerd_down_is_a_clear_error(hosts, tmp_path):
    host = hosts['rt-amd64-c']
    host.check_output('systemctl stop containerd')
    try:
        run = run_playbook(LOAD, write_inventory(tmp_path, {'standalone': ['rt-amd64-c']}), {'load_images': REFS})
        assert run.rc != 0
        msg = run.task_results('Load images')['rt-amd64-c']['msg']
        assert 'containerd' in msg and '/run/containerd/containerd.sock' in msg, msg
    finally:
        host.check_output('systemctl start containerd')
    assert host.service('containerd').is_running


def build_bundle(tmp_path_factory, name, change):
    """A signed bundle built by bundle.yml from the test spec after ``change(spec)``, copied to the deploy node."""
    base = tmp_path_factory.mktemp(name)
    spec_path = os.path.join(TESTBUNDLE, 'specs', 'ferry-test-1.0.0.yml')
    with open(spec_path) as handle:
        spec = yaml.safe_load(handle)
    here = os.path.dirname(spec_path)
    spec['artifacts'] = [dict(a, src=os.path.join(here, a['src'])) for a in spec['artifacts']]
    spec['images'] = [dict(i, oci_archive=os.path.join(here, i['oci_archive'])) for i in spec['images']]
    spec['signing']['key'] = os.path.join(here, spec['signing']['key'])
    change(spec)
    (base / 'spec.yml').write_text(yaml.safe_dump(spec))
    dest = base / name
    run = ansible([os.path.join(PROJECT, 'playbooks', 'bundle.yml'), '-e', 'bundle_spec=%s' % (base / 'spec.yml'),
                   '-e', 'bundle_dest=%s' % dest, '-e', 'bundle_wheels=false'], callback=None, project=False)
    assert run.rc == 0, run.stdout[-3000:]
    subprocess.run(['docker', 'cp', str(dest) + '/.', 'rt-amd64-a:/opt/ferry/bundles/' + name], check=True)
    return '/opt/ferry/bundles/' + name


@pytest.fixture(scope='module')
def x86_only_bundle(tmp_path_factory):
    """A signed bundle of the same release that carries x86_64 only."""
    def x86_only(spec):
        spec['arches'] = ['x86_64']
        spec['artifacts'] = [a for a in spec['artifacts'] if a['arch'] == 'x86_64']
    return build_bundle(tmp_path_factory, 'ferry-test-1.0.0-x86', x86_only)


@pytest.fixture(scope='module')
def old_arm_runtime_bundle(tmp_path_factory):
    """The same bundle (zstd layers), but its spec says the aarch64 containerd is 1.4.13 (no zstd reader)."""
    def old_arm(spec):
        for art in spec['artifacts']:
            if art['name'] == 'containerd' and art['arch'] == 'aarch64':
                art['version'] = '1.4.13'
    return build_bundle(tmp_path_factory, 'ferry-test-1.0.0-oldarm', old_arm)


def host_state(hosts):
    return dict((name, hosts[name].check_output(
        'ls -la --time-style=full-iso /var/lib/ferry/bundle/artifacts /usr/local/bin; ' + CTR + 'images ls -q'))
        for name in ALL)


def test_zstd_layers_the_arm64_runtime_cannot_read_are_refused_naming_the_host(hosts, old_arm_runtime_bundle):
    before = host_state(hosts)
    run = install(bundle_dir=old_arm_runtime_bundle)
    assert run.rc != 0
    assert all(s['changed'] == 0 for s in run.stats().values()), run.stats()
    failures = run.report()['failures']
    assert [line for line in failures if ': runtime: ' in line] == [
        "rt-arm64: runtime: zstd image layers need containerd >= 1.5; this host would run containerd 1.4.13 "
        "(the bundle's, aarch64): build the bundle with images_compression: gzip, or carry a newer containerd"], failures
    assert not run.task_results('Find the files this host lacks')
    assert host_state(hosts) == before


def test_bundle_lacking_a_host_arch_is_refused_before_any_change(hosts, x86_only_bundle):
    before = host_state(hosts)
    run = install(bundle_dir=x86_only_bundle)
    assert run.rc != 0
    assert all(s['changed'] == 0 for s in run.stats().values()), run.stats()
    report = json.dumps(run.report())
    assert 'rt-arm64' in report and 'aarch64' in report, report
    # The run stopped in preflight: no host reached distribution.
    assert not run.task_results('Find the files this host lacks')
    assert host_state(hosts) == before


def test_interrupted_install_converges_on_rerun(hosts, manifest):
    victims = ('rt-amd64-b', 'rt-arm64')
    for name in victims:
        hosts[name].check_output('rm -rf /var/lib/ferry/bundle')
        hosts[name].check_output(CTR + 'images rm --sync ' + ' '.join(REFS))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, 'ansible.cfg'),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(PROJECT, '.collections'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.Popen(['ansible-playbook', '-i', os.environ['MOLECULE_INVENTORY_FILE'], INSTALL], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, start_new_session=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith('TASK [ferry.airgap.distribute : Pull'):
                break
        else:
            raise AssertionError('install.yml ended before the pull:\n' + ''.join(seen[-60:]))
        os.killpg(proc.pid, signal.SIGKILL)   # as if the engineer's session dropped
    finally:
        proc.wait(timeout=60)
    time.sleep(3)
    assert not all(
        'ferry.test/web:1.0' in image_digests(hosts[name]) for name in victims), 'the interrupted run had already finished'

    run = install()
    assert run.rc == 0, run.stdout[-3000:]
    for name in victims:
        present = image_digests(hosts[name])
        for image in manifest['images']:
            assert present.get(image['ref']) == image['digest'], (name, present)
        assert not hosts[name].run('find /var/lib/ferry/bundle -name "*.part"').stdout.strip()
    # And the site is back at rest.
    again = install()
    assert again.rc == 0 and all(s['changed'] == 0 for s in again.stats().values()), again.stats()


# --------------------------------------------------------------------------- secrets

def test_no_secret_in_any_output_or_journal(hosts):
    """The whole install at -vvv with the JSON callback: the serve token is in no output and no host's journal.

    Every secret of this inventory is searched for: the serve token (a known one, so it can be searched for).
    The registry password of a build is searched for by tests/unit/playbooks/test_bundle_playbook.py; there is
    no cluster token until k3s exists.
    """
    token = 'FerrySecretT0ken' + os.urandom(8).hex()
    victim = hosts['rt-amd64-c']
    gone = victim.check_output('find /var/lib/ferry/bundle/artifacts -type f | sort | head -n 1')
    victim.check_output('rm -f %s' % gone)   # so the server starts and a host pulls with the token
    control = 'ferry-journal-control-' + os.urandom(4).hex()
    for host in hosts.values():
        host.check_output('logger -t ferry-test %s' % control)
    run = run_playbook(INSTALL, os.environ['MOLECULE_INVENTORY_FILE'], {'distribute_token': token}, timeout=1500,
                       args=['-vvv'])
    assert run.rc == 0, run.tail()
    text = run.stdout + run.stderr
    pulled = run.task_results("Pull this host's files")
    assert pulled.get('rt-amd64-c', {}).get('changed'), 'no host pulled with the token: the search would prove nothing'
    assert pulled['rt-amd64-c']['invocation']['module_args']['token'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert victim.file(gone).is_file
    assert token not in text
    for name, host in hosts.items():
        journal = host.check_output('journalctl --no-pager -o short')
        assert control in journal, '%s: the journal search does not see what is logged' % name
        assert token not in journal, '%s: the serve token is in the journal' % name
    assert 'ferry.airgap.bundle_pull' in victim.check_output('journalctl --no-pager -o short')  # modules do log there
