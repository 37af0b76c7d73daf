# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small two-arch bundle built in code, and a bundle server on 127.0.0.1, for the distribution tests."""

import contextlib
import json
import os
import socket

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import build_manifest, write_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import MT_OCI_MANIFEST
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import serve as S
from ansible_collections.ferry.airgap.tests.unit.plugins._bundle_testlib import write
from ansible_collections.ferry.airgap.tests.unit.plugins.module_utils._oci_fixtures import Image, gzip_bytes, layer

GOARCH = {'x86_64': 'amd64', 'aarch64': 'arm64'}
SHARED = gzip_bytes(layer({'bin/busybox': os.urandom(200 * 1024)}))  # one base layer, in both web images


def artifact_name(name, arch):
    goarch = GOARCH[arch]
    return {'containerd': 'containerd-1.6.20-linux-%s.tar.gz' % goarch,
            'runc': 'runc.%s' % goarch,
            'cni-plugins': 'cni-plugins-linux-%s-v1.1.1.tgz' % goarch}[name]


def _put_image(store, image):
    for data in image.layers:
        store.put_bytes(data)
    store.put_bytes(image.config)
    digest, size = store.put_bytes(image.manifest())
    return {'mediaType': MT_OCI_MANIFEST, 'digest': digest, 'size': size,
            'platform': {'os': 'linux', 'architecture': GOARCH[image.arch]}}


def make_bundle(root, arches=('x86_64', 'aarch64'), big=300 * 1024, name='shop', version='1.0'):
    """A bundle with containerd/runc/cni-plugins per arch, a noarch chart, an app and three images:

    ``demo/web:1.0`` (amd64 + arm64, sharing a base layer), ``demo/pause:1.0`` (amd64 + arm64) and
    ``demo/tool:1.0`` (amd64 only). Returns the manifest dict.
    """
    root = str(root)
    for arch in arches:
        for art in ('containerd', 'runc', 'cni-plugins'):
            write(os.path.join(root, 'artifacts', arch, art, artifact_name(art, arch)), os.urandom(big))
    write(os.path.join(root, 'artifacts/noarch/charts/shop-1.0.tgz'), b'chart')
    write(os.path.join(root, 'apps/shop/1.0/values.yaml'), 'replicas: 1\n')
    write(os.path.join(root, 'apps/shop/1.0/templates/deploy.yaml'), 'kind: Deployment\n')
    write(os.path.join(root, 'install.yml'), '- hosts: all\n')
    store = ImageStore(os.path.join(root, 'images'))
    store.init()
    for ref, top in (('demo/web:1.0', True), ('demo/pause:1.0', False)):
        descs = []
        for arch in arches:
            own = gzip_bytes(layer({'app': ('%s %s' % (ref, arch)).encode()}))
            descs.append(_put_image(store, Image(arch, layers=[SHARED, own] if top else [own])))
        store.set_ref(ref, descs)
    if 'x86_64' in arches:
        store.set_ref('demo/tool:1.0', [_put_image(store, Image('x86_64', layers=[layer({'tool': b'x86 only'})]))])
    manifest = build_manifest(root, {'name': name, 'version': version, 'arches': list(arches),
                                     'created': '2024-06-01T00:00:00Z'})
    write_manifest(root, manifest)
    return manifest


def free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


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
