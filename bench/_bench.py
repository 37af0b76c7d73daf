# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the bench scripts share: running commands, formatting figures, and systemd test hosts."""

import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'support'))  # ferry_run: running ansible-playbook, reading its JSON
sys.path.insert(0, os.path.join(ROOT, '.collections'))

MIB = 1024 * 1024
TESTHOST_IMAGE = 'ferry-testhost:bookworm-amd64'
CAPS_FILE = os.path.join(ROOT, 'tests', 'images', 'testhost-caps.txt')  # the test hosts' capabilities


def testhost_caps():
    with open(CAPS_FILE) as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith('#')]


def log(msg):
    sys.stderr.write('[bench] %s\n' % msg)
    sys.stderr.flush()


def run(argv, **kw):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False, **kw)
    if proc.returncode != 0:
        raise SystemExit('command failed (%d): %s\n%s' % (proc.returncode, ' '.join(argv), proc.stdout[-4000:]))
    return proc.stdout


def quiet(argv):
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def mib(n):
    return '%.1f MiB' % (n / float(MIB))


def ratio(a, b):
    return a / float(b) if b else float('nan')


def random_file(path, size):
    """``size`` bytes of os.urandom at ``path`` (its directory made), written in 1 MiB chunks; returns ``path``."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'wb') as fh:
        for off in range(0, size, MIB):
            fh.write(os.urandom(min(MIB, size - off)))
    return path


def scaled_sizes(parser, opts):
    """(--component-mib as a list of MiB, size(MiB) -> bytes times --scale, at least 4 KiB)."""
    components = [float(x) for x in opts.component_mib.split(',') if x.strip()]
    if not components:
        parser.error('--component-mib needs at least one size')

    def size(x):
        return max(4096, int(x * opts.scale * MIB))
    return components, size


def must(run, what):
    """A ferry_run.Run that must have succeeded."""
    if run.rc != 0:
        raise SystemExit('%s failed (rc %d):\n%s' % (what, run.rc, run.tail()))
    return run


def start_testhost(name, volumes=()):
    """Start (replacing any old one) a systemd test host container the way Molecule does; ``volumes``
    are extra ``-v`` specs."""
    quiet(['docker', 'rm', '-f', name])
    argv = ['docker', 'run', '-d', '--name', name, '--hostname', name, '--cap-drop', 'ALL']
    for cap in testhost_caps():
        argv += ['--cap-add', cap]
    argv += ['--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined', '--cgroupns', 'host',
             '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw', '--tmpfs', '/run', '--tmpfs', '/run/lock']
    for volume in volumes:
        argv += ['-v', volume]
    run(argv + [TESTHOST_IMAGE])


def wait_booted(name):
    for dummy in range(90):
        proc = subprocess.run(['docker', 'exec', name, 'systemctl', 'is-system-running'], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
        if proc.stdout.strip() in ('running', 'degraded'):
            return
        time.sleep(1)
    raise SystemExit('%s did not boot' % name)
