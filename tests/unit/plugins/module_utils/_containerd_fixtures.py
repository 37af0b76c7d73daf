# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A private, real containerd per test session, and small OCI image stores built in code.

The containerd is Debian's (1.6, package ``containerd``, pulled in by ``docker.io``): never the one
dockerd uses. Each one gets its own root, state, sockets and opt dir under a short /tmp directory
(a unix socket path must stay under 108 bytes); each test uses its own namespace.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._digest import canonical_json
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import MT_OCI_CONFIG, MT_OCI_LAYER_GZIP, MT_OCI_MANIFEST
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore

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


@pytest.fixture(scope='session')
def containerd():
    """A private containerd for the session (skips when it cannot run here)."""
    reason = have_containerd()
    if reason:
        pytest.skip(reason)
    base = short_tmpdir('ferry-ctrd-')
    daemon = PrivateContainerd(base).start()
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def namespace():
    return 'test-' + uuid.uuid4().hex[:12]


# ---------------------------------------------------------------- image stores built in code

def layer(files):
    """(uncompressed tar, gzip) of a layer holding {path: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=1, mtime=0)


def random_layer(name, size):
    return layer({name: os.urandom(size)})


def diff_id(raw):
    return 'sha256:' + hashlib.sha256(raw).hexdigest()


def add_manifest(store, arch, layers, variant=None):
    """Store one image manifest (+ config, layers); returns its descriptor (with platform)."""
    descs, diffs = [], []
    for raw, gz in layers:
        digest, size = store.put_bytes(gz)
        descs.append({'mediaType': MT_OCI_LAYER_GZIP, 'digest': digest, 'size': size})
        diffs.append(diff_id(raw))
    config = {'architecture': arch, 'os': 'linux', 'config': {'Cmd': ['/bin/sh']},
              'rootfs': {'type': 'layers', 'diff_ids': diffs}}
    if variant:
        config['variant'] = variant
    config_digest, config_size = store.put_bytes(canonical_json(config))
    manifest = {'schemaVersion': 2, 'mediaType': MT_OCI_MANIFEST,
                'config': {'mediaType': MT_OCI_CONFIG, 'digest': config_digest, 'size': config_size}, 'layers': descs}
    digest, size = store.put_bytes(canonical_json(manifest))
    platform = {'os': 'linux', 'architecture': arch}
    if variant:
        platform['variant'] = variant
    return {'mediaType': MT_OCI_MANIFEST, 'digest': digest, 'size': size, 'platform': platform}


def build_store(path, images):
    """An OCI layout at ``path``: images = {ref: [(arch, [layer, ...], variant), ...]}; returns the ImageStore."""
    store = ImageStore(str(path))
    store.init()
    for ref, platforms in images.items():
        store.set_ref(ref, [add_manifest(store, arch, layers, variant) for arch, layers, variant in platforms])
    return store


def platform_blobs(store, ref, arch):
    """{digest: size} of the blobs ``ref`` needs for ``arch`` (computed here independently of platform_plan)."""
    top = store.entry(ref)
    found = {}
    manifests = [top]
    if top['mediaType'] == 'application/vnd.oci.image.index.v1+json':
        found[top['digest']] = top['size']
        manifests = [m for m in store.read_json(top['digest'])['manifests'] if m['platform']['architecture'] == arch]
    for desc in manifests:
        found[desc['digest']] = desc['size']
        doc = store.read_json(desc['digest'])
        for child in [doc['config']] + doc['layers']:
            found[child['digest']] = child['size']
    return found


def corrupt(store, digest, offset=100):
    """Flip one byte of a blob of the store (size unchanged)."""
    path = store.blob_path(digest)
    with open(path, 'r+b') as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xff]))


def manifest_of(store, ref, arch):
    top = store.entry(ref)
    if top['mediaType'] != 'application/vnd.oci.image.index.v1+json':
        return store.read_json(top['digest'])
    for desc in store.read_json(top['digest'])['manifests']:
        if desc['platform']['architecture'] == arch:
            return store.read_json(desc['digest'])
    raise KeyError(arch)


def dumps(obj):
    return json.dumps(obj, sort_keys=True)
