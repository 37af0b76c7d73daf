# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bundles built in code: the one make_bundle, manifests, keys, and a bundle server on 127.0.0.1."""

import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys

# The only module_utils imports of this file.
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import serve as S
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BLOB_DIR, KIT_SUMS, MANIFEST
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.build import build_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import build_delta
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.kit import kit_sums
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.site import (
    BOOTSTRAP_DIRS, RECORD, RECORD_HEADER, default_site_key)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import write_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import sign

from .images import GOARCH, Image, digest, gzip_bytes, layer, put_image, store_with, write_layout
from .net import free_port

META = {'name': 'shop', 'version': '1.0', 'arches': ['x86_64'], 'created': '2024-06-01T00:00:00Z'}
BOTH_ARCHES = ('x86_64', 'aarch64')
K3S = b'k3s-binary-v1' * 1000
SHARED = gzip_bytes(layer({'bin/busybox': os.urandom(200 * 1024)}))  # one base layer, in both web images


EM_X86_64, EM_AARCH64 = 62, 183


def elf(machine, byte_order='little', body=b'\0' * 64):
    """The start of a 64-bit ELF executable for ``machine`` (an e_machine number), as a binary artifact."""
    ident = b'\x7fELF' + bytes([2, 1 if byte_order == 'little' else 2, 1, 0]) + b'\0' * 8
    return ident + (2).to_bytes(2, byte_order) + machine.to_bytes(2, byte_order) + body


def write(path, data):
    if isinstance(data, str):
        data = data.encode('utf-8')
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), 'wb') as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def add_blob(bundle, data):
    if not isinstance(data, bytes):
        data = json.dumps(data, sort_keys=True).encode('utf-8')
    digest = hashlib.sha256(data).hexdigest()
    write(os.path.join(str(bundle), BLOB_DIR, digest), data)
    return 'sha256:' + digest, len(data)


def make_oci(bundle, ref='registry.example/shop/web:1.0', layer_bytes=b'layer-bytes' * 100):
    """A one-image OCI layout under bundle/images (a bare config); returns (manifest digest, layer digest)."""
    image = Image(layers=[layer_bytes], config={'architecture': 'amd64', 'os': 'linux', 'rootfs': {}})
    return write_layout(os.path.join(str(bundle), 'images'), image, ref), digest(layer_bytes)


def artifact_name(name, arch):
    goarch = GOARCH[arch]
    return {'containerd': 'containerd-1.6.20-linux-%s.tar.gz' % goarch,
            'runc': 'runc.%s' % goarch,
            'cni-plugins': 'cni-plugins-linux-%s-v1.1.1.tgz' % goarch}[name]


def make_bundle(root, version='1.0', app_text='replicas: 1\n', k3s=K3S, extra=None, arches=None, big=300 * 1024,
                name='shop'):
    """A small bundle directory, in one of two shapes.

    ``arches=None`` (the bundle tests): one x86_64 k3s artifact, a noarch chart, app ``shop`` of
    ``version`` and one OCI image; ``extra`` adds {relpath: data}. No manifest yet: returns ``root``.

    ``arches=(...)`` (the distribution tests, e.g. BOTH_ARCHES): containerd/runc/cni-plugins per arch
    (``big`` random bytes each), a noarch chart, app shop 1.0 and three images: ``demo/web:1.0`` (amd64 +
    arm64, sharing a base layer), ``demo/pause:1.0`` (amd64 + arm64) and ``demo/tool:1.0`` (amd64 only).
    The manifest (``name``, ``version``) is written: returns the manifest dict.
    """
    root = str(root)
    if arches is None:
        write(os.path.join(root, 'artifacts/x86_64/k3s/k3s'), k3s)
        write(os.path.join(root, 'artifacts/noarch/charts/shop.tgz'), b'chart-' + version.encode())
        app_version = version
    else:
        for arch in arches:
            for art in ('containerd', 'runc', 'cni-plugins'):
                write(os.path.join(root, 'artifacts', arch, art, artifact_name(art, arch)), os.urandom(big))
        write(os.path.join(root, 'artifacts/noarch/charts/shop-1.0.tgz'), b'chart')
        app_version = '1.0'
    write(os.path.join(root, 'apps/shop/%s/values.yaml' % app_version), app_text)
    write(os.path.join(root, 'apps/shop/%s/templates/deploy.yaml' % app_version), 'kind: Deployment\n')
    write(os.path.join(root, 'install.yml'), '- hosts: all\n')
    if arches is None:
        make_oci(root)
    else:
        _distribution_images(os.path.join(root, 'images'), arches)
    for rel, data in (extra or {}).items():
        write(os.path.join(root, rel), data)
    if arches is None:
        return root
    manifest = build_manifest(root, {'name': name, 'version': version, 'arches': list(arches),
                                     'created': '2024-06-01T00:00:00Z'})
    write_manifest(root, manifest)
    return manifest


def _distribution_images(path, arches):
    images = {}
    for ref, top in (('demo/web:1.0', True), ('demo/pause:1.0', False)):
        images[ref] = []
        for arch in arches:
            own = gzip_bytes(layer({'app': ('%s %s' % (ref, arch)).encode()}))
            images[ref].append(Image(arch, layers=[SHARED, own] if top else [own]))
    store = store_with(path, images)
    if 'x86_64' in arches:
        store.set_ref('demo/tool:1.0', [put_image(store, Image('x86_64', layers=[layer({'tool': b'x86 only'})]))])
    return store


def finish(root, version='1.0', key=None, versions=None, meta=None):
    """Write (and optionally sign) the manifest and kit.sha256 of ``root``, as bundle_manifest does; returns the manifest.

    ``versions``: artifact versions to record ({name: {arch: version}}); ``meta``: more of build_manifest's meta
    (``arches``...).
    """
    meta = dict(META, version=version, versions=versions, **(meta or {}))
    manifest = build_manifest(str(root), meta)
    write_manifest(str(root), manifest)
    write(os.path.join(str(root), KIT_SUMS), kit_sums(manifest))
    if key:
        sign(None, os.path.join(str(root), MANIFEST), key)
        sign(None, os.path.join(str(root), KIT_SUMS), key)
    return manifest


def write_site_record(root, key_path=None, extra_lines=()):
    """Write .ferry-site.record as ./bootstrap does (header, F/L lines, HMAC line), with the site key (made if absent)."""
    key_path = key_path or default_site_key()
    if not os.path.exists(key_path):
        write(key_path, os.urandom(32).hex())
        os.chmod(key_path, 0o600)
    with open(key_path, 'rb') as fh:
        key = fh.read().strip()
    lines = [RECORD_HEADER]
    for top in BOOTSTRAP_DIRS:
        for dirpath, dirs, names in os.walk(os.path.join(str(root), top)):
            for name in dirs + names:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, str(root))
                if os.path.islink(full):
                    lines.append('L\t%s\t%s' % (os.readlink(full), rel))
                elif os.path.isfile(full):
                    with open(full, 'rb') as fh:
                        lines.append('F\t%s\t%s' % (hashlib.sha256(fh.read()).hexdigest(), rel))
    body = ('\n'.join(lines + list(extra_lines)) + '\n').encode()
    with open(os.path.join(str(root), RECORD), 'wb') as fh:
        fh.write(body + b'hmac-sha256\t' + hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b'\n')


def bootstrap_like(root, venv=True):
    """What the site adds: a venv (a real one, with its lib64 symlink), the installed collection and the
    record ./bootstrap signs with the site key, the operator's inventory, Ansible's .ansible/."""
    if venv:
        subprocess.check_call([sys.executable, '-m', 'venv', '--without-pip', os.path.join(str(root), '.ferry-venv')])
    else:
        write(os.path.join(str(root), '.ferry-venv/bin/python'), '#!/bin/sh\n')
    write(os.path.join(str(root), 'collections/ansible_collections/ferry/airgap/galaxy.yml'), 'name: airgap\n')
    write(os.path.join(str(root), '.ansible/tmp/ansible-local-1/x'), 'x')
    write(os.path.join(str(root), 'inventory/hosts.yml'), 'all: {hosts: {node1: {}}}\n')
    write(os.path.join(str(root), 'inventory/group_vars/all.yml'), 'a: 1\n')
    write(os.path.join(str(root), 'inventory/host_vars/node1.yml'), 'b: 2\n')
    write_site_record(root)


def make_delta(tmp_path, keys):
    """v1 and v2 (a changed app, one more blob) of a signed bundle and the signed delta of v2 against v1:
    ``(v1, v2, v2's manifest, delta)``."""
    v1 = make_bundle(tmp_path / 'shop-1.0')
    finish(v1, key=keys['good'])
    v2 = make_bundle(tmp_path / 'shop-2.0', version='2.0', app_text='replicas: 3\n')
    add_blob(v2, b'fresh layer')
    full = finish(v2, '2.0', key=keys['good'])
    delta = str(tmp_path / 'delta')
    build_delta(v2, v1, delta, signer=lambda p: sign(None, p, keys['good']))
    return v1, v2, full, delta


def tree(root):
    """{relpath: bytes} of every file under root."""
    out = {}
    for dirpath, dummy, files in os.walk(str(root)):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, 'rb') as f:
                out[os.path.relpath(full, str(root))] = f.read()
    return out


def siblings(path):
    """Names next to ``path`` that look like Ferry temporaries."""
    parent = os.path.dirname(str(path))
    return [n for n in os.listdir(parent) if '.tmp-' in n]


@contextlib.contextmanager
def serving(root, run_dir, token='t0ken', idle_timeout=120):
    """A daemonised bundle server on 127.0.0.1 (a free port); yields its state, stops it afterwards."""
    state = S.start(str(root), str(run_dir), '127.0.0.1', free_port(), token, idle_timeout)
    try:
        yield state
    finally:
        S.stop(state, str(run_dir))


def files_of(manifest, rels):
    return [{'path': rel, 'size': manifest['files'][rel]['size'], 'sha256': manifest['files'][rel]['sha256']}
            for rel in rels]


def dump(obj):
    return json.dumps(obj, sort_keys=True)
