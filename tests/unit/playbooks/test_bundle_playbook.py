# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/bundle.yml run for real with ansible-playbook on small inputs built in code (offline)."""

import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils import _bundle as B

from ..plugins._bundle_testlib import META, add_blob, write as write_file
from ..plugins.module_utils._oci_fixtures import Image, docker_legacy_entries, write_tar

pytestmark = pytest.mark.integration

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
BIN = os.path.dirname(sys.executable)
REF = 'registry.ferry.local/demo/web:1.0'
IDENTITY = 'release@example'


def playbook(*args, cwd=ROOT, env=None):
    full_env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', PATH=BIN + os.pathsep + os.environ['PATH'])
    full_env.update(env or {})
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook')] + list(args), cwd=cwd, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=240, check=False)
    return proc.returncode, proc.stdout


def sha(data):
    return hashlib.sha256(data).hexdigest()


def write(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), 'wb') as f:
        f.write(data)
    return str(path)


def make_inputs(base, images=None, arches=('x86_64', 'aarch64'), bad_sha=False):
    """A spec with two artifacts (one per arch), one image and one app; returns the spec path."""
    amd, arm = b'k3s amd64 binary\n' * 64, b'k3s arm64 binary\n' * 64
    write(base / 'in' / 'k3s-amd64', amd)
    write(base / 'in' / 'k3s-arm64', arm)
    write(base / 'in' / 'apps' / 'shop' / 'values.yaml', b'replicas: 2\n')
    write(base / 'in' / 'apps' / 'shop' / 'conf' / 'app.properties', b'port=8080\n')
    if images is None:
        image = Image('x86_64')  # its config has a runtime "config" key, as every real image's does
        archive = write_tar(base / 'in' / 'web.tar', docker_legacy_entries([image]))
        images = [{'ref': REF, 'docker_archive': archive, 'arch': 'x86_64'}]
    spec = {
        'name': 'shop', 'version': '2024.06.1', 'arches': list(arches),
        'artifacts': [
            {'name': 'k3s', 'arch': 'x86_64', 'src': 'in/k3s-amd64', 'dest': 'k3s',
             'sha256': ('0' * 64) if bad_sha else sha(amd)},
            {'name': 'k3s', 'arch': 'aarch64', 'src': 'in/k3s-arm64', 'dest': 'k3s', 'sha256': sha(arm)},
        ],
        'images': images,
        'apps': [{'name': 'shop', 'version': '1.4.0', 'src': 'in/apps/shop'}],
    }
    # JSON is YAML: no PyYAML needed to write it.
    return write(base / 'spec.yml', json.dumps(spec, indent=2).encode('utf-8')), sha(amd), sha(arm)


def make_key(base):
    key = str(base / 'release_key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', IDENTITY, '-f', key], check=True)
    with open(key + '.pub') as f:
        pub = f.read().split()
    signers = write(base / 'allowed_signers',
                    ('%s namespaces="ferry-bundle" %s %s\n' % (IDENTITY, pub[0], pub[1])).encode('utf-8'))
    return key, signers


def build(spec, dest, key):
    return playbook('playbooks/bundle.yml', '-e', 'bundle_spec=' + spec, '-e', 'bundle_dest=' + str(dest),
                    '-e', 'bundle_signing_key=' + key, '-e', 'bundle_signing_identity=' + IDENTITY,
                    '-e', 'bundle_wheels=false')


def leftovers(base):
    return [n for n in os.listdir(str(base)) if '.tmp-' in n]


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp('bundle')
    spec, amd, arm = make_inputs(base)
    key, signers = make_key(base)
    dest = base / 'out' / 'shop-2024.06.1'
    rc, out = build(spec, dest, key)
    return {'base': base, 'spec': spec, 'dest': dest, 'key': key, 'signers': signers, 'rc': rc, 'out': out,
            'amd': amd, 'arm': arm}


def test_build_happy_path(built):
    dest = built['dest']
    assert built['rc'] == 0, built['out']
    assert os.path.isfile(str(dest / 'manifest.json'))
    assert os.path.isfile(str(dest / 'manifest.json.sig'))
    assert leftovers(dest.parent) == []
    with open(str(dest / 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['name'] == 'shop' and manifest['arches'] == ['x86_64', 'aarch64']
    arts = {(a['arch'], a['name']): a for a in manifest['artifacts']}
    assert arts[('x86_64', 'k3s')]['path'] == 'artifacts/x86_64/k3s/k3s'
    assert arts[('x86_64', 'k3s')]['sha256'] == built['amd']
    assert arts[('aarch64', 'k3s')]['sha256'] == built['arm']
    assert [i['ref'] for i in manifest['images']] == [REF]
    assert list(manifest['images'][0]['platforms']) == ['linux/amd64']
    assert [(a['name'], a['version'], a['path']) for a in manifest['apps']] == [('shop', '1.4.0', 'apps/shop/1.4.0')]
    files = manifest['files']
    assert 'apps/shop/1.4.0/conf/app.properties' in files
    assert 'kit/collections/ferry-airgap-0.1.0.tar.gz' in files
    for name in ('bootstrap', 'ansible.cfg', 'install.yml', 'upgrade.yml', 'rollback.yml', 'verify.yml',
                 'inventory/hosts.yml.example'):
        assert name in files, name
    assert not any(f.startswith('kit/wheels/') for f in files)  # bundle_wheels=false
    assert os.access(str(dest / 'bootstrap'), os.X_OK)
    with open(str(dest / 'bootstrap')) as f:
        assert f.readline() == '#!/bin/sh\n'


def test_bootstrap_is_posix_sh(built):
    assert built['rc'] == 0, built['out']
    subprocess.run(['sh', '-n', str(built['dest'] / 'bootstrap')], check=True)


def test_bundle_verifies_with_its_own_verify_playbook(built):
    assert built['rc'] == 0, built['out']
    # The bundle's top-level verify.yml, run from inside the bundle (collection from the checkout,
    # as ./bootstrap would install it), finds the bundle it sits in.
    rc, out = playbook('verify.yml', '-e', 'bundle_allowed_signers=' + built['signers'], cwd=str(built['dest']),
                       env={'ANSIBLE_COLLECTIONS_PATH': os.path.join(ROOT, '.collections')})
    assert rc == 0, out
    assert 'Bundle shop 2024.06.1 verified: signed by %s' % IDENTITY in out


def test_verify_requires_allowed_signers(built):
    rc, out = playbook('playbooks/verify.yml', '-e', 'bundle_dir=' + str(built['dest']))
    assert rc != 0
    assert 'bundle_allowed_signers is required' in out


def test_rebuild_replaces_older_bundle(built, tmp_path):
    assert built['rc'] == 0, built['out']
    old = built['dest'] / 'manifest.json'
    with open(str(old)) as f:
        before = json.load(f)
    # A failing rebuild leaves the older bundle untouched.
    bad_spec, _amd_sha, _arm_sha = make_inputs(tmp_path, bad_sha=True)
    rc, out = build(bad_spec, built['dest'], built['key'])
    assert rc != 0
    with open(str(old)) as f:
        assert json.load(f) == before
    assert leftovers(built['dest'].parent) == []


def test_wrong_sha256_fails_and_leaves_nothing(tmp_path):
    spec, amd, _unused = make_inputs(tmp_path, bad_sha=True)
    key, _allowed = make_key(tmp_path)
    dest = tmp_path / 'shop'
    rc, out = build(spec, dest, key)
    assert rc != 0
    assert 'x86_64/k3s' in out
    assert '0' * 64 in out and amd in out
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_unsupported_arch_is_named(tmp_path):
    spec, _amd_sha, _arm_sha = make_inputs(tmp_path, arches=('x86_64', 'aarch64', 'ppc64le'))
    key, _allowed = make_key(tmp_path)
    dest = tmp_path / 'shop'
    rc, out = build(spec, dest, key)
    assert rc != 0
    assert "ppc64le" in out and 'arches[2]' in out
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_unreachable_registry_fails_and_leaves_nothing(tmp_path):
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    images = [{'ref': REF, 'registry': {'ref': '127.0.0.1:%d/demo/web:1.0' % port}}]
    spec, _amd_sha, _arm_sha = make_inputs(tmp_path, images=images)
    key, _allowed = make_key(tmp_path)
    dest = tmp_path / 'shop'
    rc, out = build(spec, dest, key)
    assert rc != 0
    assert 'Import images into the OCI store' in out
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_real_image_config_verifies(tmp_path):
    root = str(tmp_path / 'b')
    layer_d, layer_n = add_blob(root, b'layer' * 100)
    config_d, config_n = add_blob(root, {'architecture': 'amd64', 'os': 'linux', 'config': {'Cmd': ['/app']},
                                         'rootfs': {'type': 'layers', 'diff_ids': [layer_d]}})
    man_d, man_n = add_blob(root, {
        'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
        'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': config_d, 'size': config_n},
        'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar', 'digest': layer_d, 'size': layer_n}]})
    write_file(os.path.join(root, 'images', 'oci-layout'), '{"imageLayoutVersion": "1.0.0"}')
    write_file(os.path.join(root, 'images', 'index.json'), json.dumps({'schemaVersion': 2, 'manifests': [{
        'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': man_d, 'size': man_n,
        'annotations': {'org.opencontainers.image.ref.name': REF}}]}))
    manifest = B.build_manifest(root, dict(META))
    assert B.verify_bundle(root, manifest) == []
