# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A private, real containerd per test session (the ``containerd`` and ``namespace`` fixtures).

The containerd is Debian's (1.6, package ``containerd``, pulled in by ``docker.io``): never the one
dockerd uses. Each one gets its own root, state, sockets and opt dir under a short /tmp directory
(a unix socket path must stay under 108 bytes); each test uses its own namespace. Image stores to
load into it: test_support.images (build_store).
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

# collect garbage right after each change, as a busy node eventually does: tests that wait for
# garbage collection do not depend on the scheduler's pacing, and races with it show up here
[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 1
  mutation_threshold = 1
  schedule_delay = "0s"
"""


def have_containerd():
    """None when a private containerd can run here, else the reason it cannot."""
    missing = [name for name in ('containerd', 'ctr') if shutil.which(name) is None]
    if missing:
        return ('%s not installed: apt-get install containerd (tests/host-setup.sh installs docker.io, which brings it)'
                % ' and '.join(missing))
    if os.geteuid() != 0:
        return 'containerd needs root (mounts for snapshots)'
    return None


def ctr_run(address, namespace, *args):
    proc = subprocess.run(['ctr', '-a', address, '-n', namespace] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class PrivateContainerd(object):
    """containerd with everything under ``base`` (its root may be a mount point given as ``root``)."""

    def __init__(self, base, root=None):
        self.base = base
        self.root = root or os.path.join(base, 'root')
        self.address = os.path.join(base, 'c.sock')
        self.config = os.path.join(base, 'config.toml')
        self.log = os.path.join(base, 'containerd.log')
        self.proc = None
        with open(self.config, 'w') as fh:
            fh.write(CONFIG.format(root=self.root, state=os.path.join(base, 'state'), sock=self.address,
                                   opt=os.path.join(base, 'opt')))

    def start(self):
        with open(self.log, 'ab') as log:
            self.proc = subprocess.Popen(['containerd', '--config', self.config], stdout=log, stderr=log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('containerd exited with %s: %s' % (self.proc.returncode, self.tail()))
            if os.path.exists(self.address) and ctr_run(self.address, 'default', 'version')[0] == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError('containerd did not answer within 30 s: %s' % self.tail())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tail(self):
        try:
            with open(self.log) as fh:
                return fh.read()[-2000:]
        except OSError:
            return ''

    def ctr(self, namespace, *args):
        return ctr_run(self.address, namespace, *args)

    def images(self, namespace):
        """{ref: digest} as ctr lists them."""
        rc, out, err = self.ctr(namespace, 'images', 'ls')
        assert rc == 0, err
        return dict((f[0], f[2]) for f in (line.split() for line in out.splitlines()[1:]) if len(f) >= 3)

    def content(self, namespace):
        rc, out, err = self.ctr(namespace, 'content', 'ls', '-q')
        assert rc == 0, err
        return set(out.split())

    def snapshots(self, namespace):
        rc, out, err = self.ctr(namespace, 'snapshots', 'ls')
        assert rc == 0, err
        return set(line.split()[0] for line in out.splitlines()[1:] if line.strip())

    def wait_gc(self, namespace, gone, timeout=10):
        """Wait until none of the digests ``gone`` is in the namespace's content (GC is asynchronous)."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.content(namespace) & set(gone):
            time.sleep(0.1)
        return not self.content(namespace) & set(gone)


def short_tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix, dir='/tmp')


@contextlib.contextmanager
def private_containerd(prefix='ferry-ctrd-', tmpfs_size=None):
    """A started PrivateContainerd under a short /tmp directory, removed afterwards (skips when it cannot
    run here); with ``tmpfs_size`` (e.g. '20m') its root is a tmpfs of that size (resize it with ``resize``)."""
    reason = have_containerd()
    if reason:
        pytest.skip(reason)
    base = short_tmpdir(prefix)
    root = None
    if tmpfs_size:
        root = os.path.join(base, 'root')
        os.mkdir(root)
        if subprocess.call(['mount', '-t', 'tmpfs', '-o', 'size=%s' % tmpfs_size, 'tmpfs', root]) != 0:
            shutil.rmtree(base)
            pytest.skip('cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)')
    daemon = PrivateContainerd(base, root=root)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        if root:
            subprocess.call(['umount', '-l', root])
        shutil.rmtree(base, ignore_errors=True)


def resize(daemon, size):
    """Resize the tmpfs root of a private_containerd(tmpfs_size=...)."""
    subprocess.check_call(['mount', '-o', 'remount,size=%s' % size, daemon.root])


@pytest.fixture(scope='session')
def containerd():
    """A private containerd for the session (skips when it cannot run here)."""
    with private_containerd() as daemon:
        yield daemon


@pytest.fixture
def namespace():
    return 'test-' + uuid.uuid4().hex[:12]
