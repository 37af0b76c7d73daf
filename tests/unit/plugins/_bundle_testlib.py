# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers for the bundle tests: fake bundles, OCI layouts and ssh keys built in code."""

import hashlib
import json
import os
import subprocess

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BLOB_DIR, MANIFEST
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import build_manifest, write_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import sign


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


def make_oci(bundle, ref='registry.example/shop/web:1.0', layer=b'layer-bytes' * 100):
    """A one-image OCI layout under bundle/images; returns the image manifest digest."""
    layer_d, layer_n = add_blob(bundle, layer)
    config_d, config_n = add_blob(bundle, {'architecture': 'amd64', 'os': 'linux', 'rootfs': {}})
    man = {'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
           'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': config_d, 'size': config_n},
           'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar', 'digest': layer_d, 'size': layer_n}]}
    man_d, man_n = add_blob(bundle, man)
    write(os.path.join(str(bundle), 'images', 'oci-layout'), '{"imageLayoutVersion": "1.0.0"}')
    write(os.path.join(str(bundle), 'images', 'index.json'), json.dumps({
        'schemaVersion': 2, 'manifests': [{
            'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': man_d, 'size': man_n,
            'annotations': {'org.opencontainers.image.ref.name': ref}}]}))
    return man_d, layer_d


def make_bundle(root, version='1.0', app_text='replicas: 1\n', k3s=b'k3s-binary-v1' * 1000, extra=None):
    """A complete small bundle directory (no manifest yet)."""
    root = str(root)
    write(os.path.join(root, 'artifacts/x86_64/k3s/k3s'), k3s)
    write(os.path.join(root, 'artifacts/noarch/charts/shop.tgz'), b'chart-' + version.encode())
    write(os.path.join(root, 'apps/shop/%s/values.yaml' % version), app_text)
    write(os.path.join(root, 'apps/shop/%s/templates/deploy.yaml' % version), 'kind: Deployment\n')
    write(os.path.join(root, 'install.yml'), '- hosts: all\n')
    make_oci(root)
    for rel, data in (extra or {}).items():
        write(os.path.join(root, rel), data)
    return root


META = {'name': 'shop', 'version': '1.0', 'arches': ['x86_64'], 'created': '2024-06-01T00:00:00Z'}


def finish(root, version='1.0', key=None):
    """Write (and optionally sign) the manifest of ``root``; returns the manifest dict."""
    meta = dict(META, version=version)
    manifest = build_manifest(str(root), meta)
    write_manifest(str(root), manifest)
    if key:
        sign(None, os.path.join(str(root), MANIFEST), key)
    return manifest


def keygen(directory, name):
    path = os.path.join(str(directory), name)
    subprocess.check_call(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path])
    return path


def run_module(module, args, capsys, check_mode=False, diff=False):
    """Run ``module.main()`` with ``args``; returns (result dict, exit code)."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            module.main()
    out = capsys.readouterr().out
    return json.loads(out), exc.value.code


def tree(root):
    """{relpath: bytes} of every file under root."""
    out = {}
    for dirpath, _dirs, files in os.walk(str(root)):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, 'rb') as f:
                out[os.path.relpath(full, str(root))] = f.read()
    return out


def siblings(path):
    """Names next to ``path`` that look like Ferry temporaries."""
    parent = os.path.dirname(str(path))
    return [n for n in os.listdir(parent) if '.tmp-' in n]
