"""Verifier for the bundle_kit scenario: the kit on a Debian 12 host, bootstrapped without network.

The test host is a minimal Debian: python3 3.11 without the python3-venv package, so without
ensurepip. ./bootstrap must give its venv pip from the kit's own pip wheel, install ansible-core
with pip --no-index and the collection with ansible-galaxy --offline. Everything runs under
`unshare --net` (an empty network namespace: not even a route to the docker bridge).
The ensurepip fallback (a kit without a pip wheel) is run on the controller, whose Python has it.
"""
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'support'))
from ferry_run import molecule_hosts  # noqa: E402

KIT = '/opt/ferry/kit'
BUILD = os.path.join(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', ''), 'bundle_kit', 'kit')
OFFLINE = 'unshare --net '


@pytest.fixture(scope='module')
def host():
    return molecule_hosts()['bk-host']


@pytest.fixture(scope='module')
def bootstrapped(host):
    """./bootstrap run once, offline, from a kit nobody bootstrapped before."""
    assert not host.file(KIT + '/.ferry-venv').exists, 'the kit was bootstrapped before the verifier ran'
    return host.run('cd %s && %s./bootstrap' % (KIT, OFFLINE))


def test_kit_files(host):
    assert host.file(KIT + '/bootstrap').mode & 0o111
    assert host.file(KIT + '/bootstrap').content_string.startswith('#!/bin/sh\n')
    for name in ('ansible.cfg', 'install.yml', 'upgrade.yml', 'rollback.yml', 'verify.yml',
                 'inventory/hosts.yml.example', 'kit/collections/ferry-airgap-0.1.0.tar.gz',
                 'manifest.json', 'manifest.json.sig'):
        assert host.file(KIT + '/' + name).is_file, name
    wheels = host.run('ls %s/kit/wheels' % KIT).stdout.split()
    assert any(w.startswith('ansible_core-2.16.') for w in wheels), wheels
    assert any(w.startswith('pip-') for w in wheels), wheels
    # restricted to the test host: CPython 3.11 on x86_64 only
    binary = [w for w in wheels if not w.endswith('-none-any.whl')]
    assert binary and all('x86_64' in w and ('cp311' in w or 'abi3' in w) for w in binary), binary


def test_host_is_minimal_debian_without_ensurepip(host):
    # the premise of the next tests: Debian without python3-venv has venv but not ensurepip
    assert host.run('python3 -c "import venv"').rc == 0
    assert host.run('python3 -c "import ensurepip"').rc != 0
    assert host.run(OFFLINE + 'cat /proc/net/dev').stdout.count(':') == 1  # only lo


def test_bootstrap_offline(host, bootstrapped):
    assert bootstrapped.rc == 0, bootstrapped.stdout + bootstrapped.stderr
    assert 'Successfully installed pip' in bootstrapped.stdout
    assert 'ansible-core-2.16.' in bootstrapped.stdout
    assert 'Ferry site kit ready in %s' % KIT in bootstrapped.stdout


def test_ansible_from_the_venv(host, bootstrapped):
    out = host.run('%s/.ferry-venv/bin/ansible --version' % KIT)
    assert out.rc == 0, out.stderr
    assert 'ansible [core 2.16.' in out.stdout
    assert 'python version = 3.11' in out.stdout


def test_collection_installed_in_the_kit(host, bootstrapped):
    out = host.run('cd %s && .ferry-venv/bin/ansible-galaxy collection list ferry.airgap' % KIT)
    assert out.rc == 0, out.stderr
    assert '# %s/collections/ansible_collections' % KIT in out.stdout
    assert 'ferry.airgap 0.1.0' in ' '.join(out.stdout.split())


def test_verify_playbook_after_bootstrap(host, bootstrapped):
    # what the operator adds next; bundle_verify skips these site-local paths
    host.run('mkdir -p %s/inventory/group_vars' % KIT)
    host.run("printf 'all:\\n  children:\\n    deploy:\\n      hosts:\\n        node1: {ansible_connection: local}\\n'"
             " > %s/inventory/hosts.yml" % KIT)
    host.run("printf 'ansible_python_interpreter: /usr/bin/python3\\n' > %s/inventory/group_vars/all.yml" % KIT)
    out = host.run('cd %s && %s.ferry-venv/bin/ansible-playbook verify.yml -e bundle_allowed_signers=/etc/ferry/allowed_signers'
                   % (KIT, OFFLINE))
    assert out.rc == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert 'Bundle kit 0.0.0-molecule' in out.stdout and 'verified: signed by release@molecule' in out.stdout
    # a file the manifest lists is still checked
    host.run('cp %s/ansible.cfg /tmp/ansible.cfg.orig && echo "# edited" >> %s/ansible.cfg' % (KIT, KIT))
    try:
        out = host.run('cd %s && %s.ferry-venv/bin/ansible-playbook verify.yml -e bundle_allowed_signers=/etc/ferry/allowed_signers'
                       % (KIT, OFFLINE))
    finally:
        host.run('cp /tmp/ansible.cfg.orig %s/ansible.cfg' % KIT)
    assert out.rc != 0 and 'size mismatch: ansible.cfg' in out.stdout


def test_bootstrap_again_is_harmless(host, bootstrapped):
    out = host.run('cd %s && %s./bootstrap' % (KIT, OFFLINE))
    assert out.rc == 0, out.stderr
    assert 'Successfully installed pip' not in out.stdout  # the venv already has pip


def test_bootstrap_without_any_pip_source_fails_clearly(host):
    copy = '/tmp/kit-nopip'
    host.run('rm -rf %s && mkdir %s && cd %s && cp -a ansible.cfg bootstrap kit %s/ && rm %s/kit/wheels/pip-*.whl'
             % (copy, copy, KIT, copy, copy))
    out = host.run('cd %s && %s./bootstrap' % (copy, OFFLINE))
    assert out.rc == 1
    assert 'bootstrap: ERROR: ' in out.stderr
    assert 'has no ensurepip and kit/wheels has no pip wheel' in out.stderr
    assert 'python3-venv' in out.stderr
    assert not host.file(copy + '/.ferry-venv').exists
    host.run('rm -rf %s' % copy)


def test_bootstrap_with_ensurepip_on_the_controller(tmp_path):
    """No pip wheel, but a Python with ensurepip (the controller's): the fallback path."""
    python = getattr(sys, '_base_executable', None) or sys.executable
    if subprocess.call([python, '-c', 'import ensurepip'], stderr=subprocess.DEVNULL) != 0:
        pytest.fail('%s has no ensurepip: this test needs a Python that has it' % python)
    kit = str(tmp_path / 'kit')
    os.makedirs(kit)
    for name in ('bootstrap', 'ansible.cfg', 'kit'):
        src = os.path.join(BUILD, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(kit, name))
    for name in os.listdir(os.path.join(kit, 'kit', 'wheels')):
        if name.startswith('pip-'):
            os.unlink(os.path.join(kit, 'kit', 'wheels', name))
    env = dict(os.environ, FERRY_PYTHON=python)
    env.pop('VIRTUAL_ENV', None)
    proc = subprocess.run(['unshare', '--net', './bootstrap'], cwd=kit, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Ferry site kit ready' in proc.stdout
    out = subprocess.run([os.path.join(kit, '.ferry-venv', 'bin', 'ansible'), '--version'], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert 'ansible [core 2.16.' in out
