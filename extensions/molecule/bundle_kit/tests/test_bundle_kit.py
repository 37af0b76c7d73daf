"""Verifier for the bundle_kit scenario: the kit on a Debian 12 host, checked and bootstrapped without network.

The test host is a minimal Debian: python3 3.11 without the python3-venv package, so without
ensurepip. The first install runs the exact commands of docs/bundle.md ("First install"): check
kit.sha256's signature and hashes with ssh-keygen and sha256sum, then ./bootstrap, which must give
its venv pip from the kit's own pip wheel, install ansible-core with pip --no-index and the
collection with ansible-galaxy --offline. Tampered copies of the kit must be refused before anything
of them runs. Everything runs under `unshare --net` (an empty network namespace).
The ensurepip fallback (a kit without a pip wheel) is run on the controller, whose Python has it.
"""
import base64
import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'support'))
from ferry_run import molecule_hosts  # noqa: E402

KIT = '/opt/ferry/kit'
PRISTINE = '/opt/ferry/pristine'
BUILD = os.path.join(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', ''), 'bundle_kit', 'kit')
RELEASE_KEY = os.path.join(os.path.dirname(BUILD), 'release_key')
OFFLINE = 'unshare --net '
DOC_DIR = '/opt/ferry/bundles/shop-2024.06.1'


def first_install_commands(block='first-install'):
    """The shell commands of a First install block of docs/bundle.md (between its markers)."""
    with open(os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'docs', 'bundle.md')) as fh:
        text = fh.read()
    found = re.search(r'<!-- %s:begin[^>]*-->\s*```sh\n(.*?)```\s*<!-- %s:end -->' % (block, block), text, re.S)
    assert found, 'docs/bundle.md has no %s block' % block
    assert DOC_DIR in found.group(1)
    return found.group(1)


def run_script(host, script):
    host.run('echo %s | base64 -d > /tmp/first-install.sh' % base64.b64encode(('set -e\n' + script).encode()).decode())
    return host.run(OFFLINE + 'sh /tmp/first-install.sh')


def first_install(host, directory):
    """Run the documented commands on ``directory`` of the host, offline, stopping at the first failure."""
    return run_script(host, first_install_commands().replace(DOC_DIR, directory))


@pytest.fixture(scope='module')
def host():
    return molecule_hosts()['bk-host']


@pytest.fixture(scope='module')
def pristine(host):
    """A copy of the kit as delivered, made before anything ran in it."""
    assert not host.file(KIT + '/.ferry-venv').exists, 'the kit was bootstrapped before the verifier ran'
    assert host.run('rm -rf %s && cp -a %s %s' % (PRISTINE, KIT, PRISTINE)).rc == 0
    return PRISTINE


@pytest.fixture(scope='module')
def bootstrapped(host, pristine):
    """The documented first install, once, offline, on a kit nobody bootstrapped before."""
    return first_install(host, KIT)


def test_kit_files(host):
    assert host.file(KIT + '/bootstrap').mode & 0o111
    assert host.file(KIT + '/bootstrap').content_string.startswith('#!/bin/sh\n')
    for name in ('ansible.cfg', 'install.yml', 'upgrade.yml', 'rollback.yml', 'verify.yml',
                 'inventory/hosts.yml.example', 'kit/collections/ferry-airgap-0.1.0.tar.gz',
                 'manifest.json', 'manifest.json.sig', 'kit.sha256', 'kit.sha256.sig'):
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


def test_first_install_offline(host, bootstrapped):
    assert bootstrapped.rc == 0, bootstrapped.stdout + bootstrapped.stderr
    assert 'bootstrap: kit.sha256 signed by release@molecule' in bootstrapped.stdout
    assert host.file(KIT + '/.ferry-site.record').is_file
    assert host.file('/etc/ferry/site.key').mode == 0o600 and host.file('/etc/ferry/site.key').user == 'root'
    assert 'Successfully installed pip' in bootstrapped.stdout
    assert 'ansible-core-2.16.' in bootstrapped.stdout
    assert 'Ferry site kit ready in %s' % KIT in bootstrapped.stdout


# (name, how to tamper with a fresh copy {d} of the kit, what the refusal says, a file that must not appear)
TAMPERED = [
    ('listed-file-changed', "echo '# edited' >> {d}/ansible.cfg", 'ansible.cfg: FAILED', None),
    ('bootstrap-changed', "sed -i '2i touch /tmp/pwned-bootstrap' {d}/bootstrap", 'bootstrap: FAILED', None),
    ('sums-forged', "echo '# edited' >> {d}/ansible.cfg && sed -i \"s/^[0-9a-f]*  ansible.cfg$/$(sha256sum {d}/ansible.cfg"
     " | cut -c1-64)  ansible.cfg/\" {d}/kit.sha256", 'the signature of kit.sha256 does not verify', None),
    ('other-key', "ssh-keygen -q -t ed25519 -N '' -f /tmp/other_key <<< y >/dev/null 2>&1; rm -f {d}/kit.sha256.sig"
     " && ssh-keygen -Y sign -f /tmp/other_key -n ferry-bundle {d}/kit.sha256",
     'kit.sha256 is not signed by a key listed in /etc/ferry/allowed_signers', None),
    ('planted-venv', "mkdir -p {d}/.ferry-venv/bin && printf '#!/bin/sh\\ntouch /tmp/pwned-venv\\n' > {d}/.ferry-venv/bin/python"
     " && chmod +x {d}/.ferry-venv/bin/python", 'site-local paths that this site did not make: .ferry-venv',
     '/tmp/pwned-venv'),
    ('planted-group-vars', "mkdir -p {d}/inventory/group_vars && echo 'ansible_shell_executable: /tmp/evil' >"
     " {d}/inventory/group_vars/all.yml", 'site-local paths that this site did not make: inventory/group_vars', None),
    ('forged-record', "mkdir -p {d}/collections && touch {d}/collections/x && printf 'ferry-site-record 1\\n"
     "hmac-sha256\\t%064d\\n' 0 > {d}/.ferry-site.record", 'site-local paths that this site did not make: collections .ferry-site.record', None),
    ('extra-wheel', "cp {d}/kit/wheels/pip-*.whl {d}/kit/wheels/zzz-9.9-py3-none-any.whl",
     'files under kit/ that kit.sha256 does not list', None),
    ('plugins-next-to-playbooks', "mkdir {d}/filter_plugins && echo 'import os' > {d}/filter_plugins/evil.py",
     'paths the bundle does not list: filter_plugins', None),
]


@pytest.mark.parametrize('name,how,says,planted', TAMPERED, ids=[t[0] for t in TAMPERED])
def test_tampered_kit_is_refused_before_anything_runs(host, pristine, name, how, says, planted):
    copy = '/opt/ferry/tampered-' + name
    assert host.run('rm -rf %s /tmp/pwned-* && cp -a %s %s' % (copy, pristine, copy)).rc == 0
    assert host.run('bash -c %s' % _quote(how.format(d=copy))).rc == 0, how
    # the documented commands, then ./bootstrap alone (its own checks; says: what it answers)
    for run in (first_install, lambda host, copy: host.run('cd %s && %s./bootstrap' % (copy, OFFLINE))):
        out = run(host, copy)
        assert out.rc != 0, out.stdout + out.stderr
        assert not host.file(copy + '/.ferry-venv/bin/ansible').exists
        assert not host.file(copy + '/.ferry-site.record').exists or name == 'forged-record'
        if planted:
            assert not host.file(planted).exists, '%s ran' % planted
        # the documented commands never run a changed ./bootstrap (run alone, it stops at its own check)
        assert not host.file('/tmp/pwned-bootstrap').exists or run is not first_install
    assert says in out.stdout + out.stderr, out.stdout + out.stderr
    host.run('rm -rf %s' % copy)


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def test_first_install_from_a_tar(host, bootstrapped):
    """The documented tar commands: the kit's two files, their check, the listed files, bootstrap, bundle_verify."""
    script = (first_install_commands('first-install-tar').replace(DOC_DIR, '/opt/ferry/fromtar/kit')
              .replace('/media/usb/shop-2024.06.1.tar', '/opt/ferry/media/kit.tar').replace('shop-2024.06.1/', 'kit/'))
    host.run('rm -rf /opt/ferry/fromtar')
    out = run_script(host, script)
    assert out.rc == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert 'bootstrap: kit.sha256 signed by release@molecule' in out.stdout
    assert 'Bundle kit 0.0.0-molecule verified: signed by release@molecule' in out.stdout
    assert host.file('/opt/ferry/fromtar/kit/.ferry-venv/bin/ansible').exists


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
    # running Ansible from the kit adds nothing to what ./bootstrap recorded: verify again
    out = host.run('cd %s && %s.ferry-venv/bin/ansible-playbook verify.yml -e bundle_allowed_signers=/etc/ferry/allowed_signers'
                   % (KIT, OFFLINE))
    assert out.rc == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # code added to the venv after bootstrap is not the site's: verify names it
    pth = host.run('ls -d %s/.ferry-venv/lib/python3*/site-packages' % KIT).stdout.strip() + '/zz-evil.pth'
    host.run("echo 'import os' > %s" % pth)
    try:
        out = host.run('cd %s && %s.ferry-venv/bin/ansible-playbook verify.yml -e bundle_allowed_signers=/etc/ferry/allowed_signers'
                       % (KIT, OFFLINE))
    finally:
        host.run('rm -f %s' % pth)
    assert out.rc != 0 and 'zz-evil.pth: not in the site record of ./bootstrap' in ' '.join(out.stdout.split()), \
        out.stdout[-3000:]
    # a file the manifest lists is still checked
    host.run('cp %s/ansible.cfg /tmp/ansible.cfg.orig && echo "# edited" >> %s/ansible.cfg' % (KIT, KIT))
    try:
        out = host.run('cd %s && %s.ferry-venv/bin/ansible-playbook verify.yml -e bundle_allowed_signers=/etc/ferry/allowed_signers'
                       % (KIT, OFFLINE))
    finally:
        host.run('cp /tmp/ansible.cfg.orig %s/ansible.cfg' % KIT)
    assert out.rc != 0 and 'size mismatch: ansible.cfg' in out.stdout


def test_bootstrap_again_makes_the_venv_anew_and_keeps_the_inventory(host, bootstrapped):
    host.run("printf 'all: {}\\n' > %s/inventory/hosts.yml" % KIT)
    before = host.file(KIT + '/.ferry-site.record').content_string
    out = host.run('cd %s && %s./bootstrap' % (KIT, OFFLINE))
    assert out.rc == 0, out.stderr
    assert 'Successfully installed pip' in out.stdout  # a new venv, not the one it found
    assert host.file(KIT + '/inventory/hosts.yml').content_string == 'all: {}\n'
    assert host.file(KIT + '/.ferry-site.record').content_string != before  # new venv, new hashes


def kit_without_pip(dest):
    """The kit without its pip wheel, kit.sha256 re-made and re-signed with the release key (on the controller)."""
    shutil.copytree(BUILD, dest)
    for name in os.listdir(os.path.join(dest, 'kit', 'wheels')):
        if name.startswith('pip-'):
            os.unlink(os.path.join(dest, 'kit', 'wheels', name))
    sums = os.path.join(dest, 'kit.sha256')
    with open(sums) as fh:
        lines = [line for line in fh if '  kit/wheels/pip-' not in line]
    with open(sums, 'w') as fh:
        fh.writelines(lines)
    os.unlink(sums + '.sig')
    subprocess.run(['ssh-keygen', '-q', '-Y', 'sign', '-f', RELEASE_KEY, '-n', 'ferry-bundle', sums], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return dest


def test_bootstrap_without_any_pip_source_fails_clearly(host, tmp_path):
    copy = '/tmp/kit-nopip'
    local = kit_without_pip(str(tmp_path / 'kit-nopip'))
    host.run('rm -rf %s' % copy)
    subprocess.run(['docker', 'cp', local, 'bk-host:%s' % copy], check=True)
    out = host.run('cd %s && %s./bootstrap' % (copy, OFFLINE))
    assert out.rc == 1
    assert 'bootstrap: kit.sha256 signed by release@molecule' in out.stdout  # the kit checked...
    assert 'bootstrap: ERROR: ' in out.stderr  # ...but it cannot give the venv pip
    assert 'has no ensurepip and kit/wheels has no pip wheel' in out.stderr
    assert 'python3-venv' in out.stderr
    assert not host.file(copy + '/.ferry-venv').exists
    host.run('rm -rf %s' % copy)


def test_bootstrap_with_ensurepip_on_the_controller(tmp_path):
    """No pip wheel, but a Python with ensurepip (the controller's): the fallback path."""
    python = getattr(sys, '_base_executable', None) or sys.executable
    if subprocess.call([python, '-c', 'import ensurepip'], stderr=subprocess.DEVNULL) != 0:
        pytest.fail('%s has no ensurepip: this test needs a Python that has it' % python)
    kit = kit_without_pip(str(tmp_path / 'kit'))
    signers = tmp_path / 'allowed_signers'
    with open(RELEASE_KEY + '.pub') as fh:
        signers.write_text('release@molecule namespaces="ferry-bundle" %s\n' % ' '.join(fh.read().split()[:2]))
    env = dict(os.environ, FERRY_PYTHON=python, FERRY_SITE_KEY=str(tmp_path / 'site.key'))
    env.pop('VIRTUAL_ENV', None)
    proc = subprocess.run(['unshare', '--net', './bootstrap', '--allowed-signers', str(signers)], cwd=kit, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Ferry site kit ready' in proc.stdout
    out = subprocess.run([os.path.join(kit, '.ferry-venv', 'bin', 'ansible'), '--version'], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert 'ansible [core 2.16.' in out
