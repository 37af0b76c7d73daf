# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/bundle.yml run for real with ansible-playbook on small inputs built in code (offline)."""

import hashlib
import json
import os
import re
import subprocess

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.build import build_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.verify import verify_bundle
from ansible_collections.ferry.airgap.tests.support.ferry_run import PROJECT, ansible

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import META
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import (
    Image, digest, docker_legacy_entries, layer, push_image, write_layout, write_tar)
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.keys import signing_key
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.net import free_port
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.registry import run_registry

pytestmark = pytest.mark.integration

ROOT = PROJECT
REF = 'registry.ferry.local/demo/web:1.0'
IDENTITY = 'release@example'


def playbook(*args, cwd=ROOT, env=None, command='ansible-playbook'):
    """Run ``command`` (plain output, stderr merged, the ansible.cfg of ``cwd``); returns (rc, output)."""
    run = ansible(args, command=command, callback=None, project=False, env=env, cwd=cwd, timeout=240, merge=True)
    return run.rc, unfold(run.stdout)


def unfold(out):
    """The callback folds long YAML strings (where depends on the tmp path's length): join the
    continuation lines so that messages can be matched whole."""
    return re.sub(r'\n +', ' ', out)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def write(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), 'wb') as f:
        f.write(data)
    return str(path)


def make_inputs(base, images=None, arches=('x86_64', 'aarch64'), bad_sha=False, version='2024.06.1',
                values=b'replicas: 2\n'):
    """A spec with two artifacts (one per arch), one image and one app; returns the spec path."""
    amd, arm = b'k3s amd64 binary\n' * 64, b'k3s arm64 binary\n' * 64
    write(base / 'in' / 'k3s-amd64', amd)
    write(base / 'in' / 'k3s-arm64', arm)
    write(base / 'in' / 'apps' / 'shop' / 'values.yaml', values)
    write(base / 'in' / 'apps' / 'shop' / 'conf' / 'app.properties', b'port=8080\n')
    if images is None:
        image = Image('x86_64')  # its config has a runtime "config" key, as every real image's does
        archive = write_tar(base / 'in' / 'web.tar', docker_legacy_entries([image]))
        images = [{'ref': REF, 'docker_archive': archive, 'arch': 'x86_64'}]
    spec = {
        'name': 'shop', 'version': version, 'arches': list(arches),
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
    return signing_key(base, IDENTITY)


def build(spec, dest, key, *extra, env=None):
    """Run bundle.yml (no wheelhouse); ``key=None`` gives no signing key; ``extra`` are more arguments."""
    args = ['playbooks/bundle.yml', '-e', 'bundle_spec=' + spec, '-e', 'bundle_dest=' + str(dest),
            '-e', 'bundle_wheels=false']
    if key:
        args += ['-e', 'bundle_signing_key=' + key, '-e', 'bundle_signing_identity=' + IDENTITY]
    return playbook(*(args + list(extra)), env=env)


def module(name, **module_args):
    """Run ferry.airgap.<name> once on localhost (ad hoc); returns (rc, output)."""
    return playbook('localhost', '-m', 'ferry.airgap.' + name, '-a', json.dumps(module_args), command='ansible')


def load_manifest(bundle_dir):
    with open(os.path.join(str(bundle_dir), 'manifest.json')) as f:
        return json.load(f)


def files_under(root):
    out = set()
    for dirpath, _dirs, names in os.walk(str(root)):
        for name in names:
            out.add(os.path.relpath(os.path.join(dirpath, name), str(root)).replace(os.sep, '/'))
    return out


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
    port = free_port()
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
    # its config has the runtime "config" key (Cmd) and the layer's diff_id, as every real image's does
    write_layout(os.path.join(root, 'images'), Image(layers=[b'layer' * 100]), REF)
    manifest = build_manifest(root, dict(META))
    assert verify_bundle(root, manifest) == []


# --------------------------------------------------------------------------- deltas

@pytest.fixture(scope='module')
def deltas(tmp_path_factory):
    """v1 built, then v2 (new version, one app file changed) built with -e bundle_base=v1."""
    base = tmp_path_factory.mktemp('delta')
    key, signers = make_key(base)
    spec1, _amd, _arm = make_inputs(base / 'v1', version='2024.06.1')
    v1 = base / 'out' / 'shop-2024.06.1'
    rc, out = build(spec1, v1, key)
    assert rc == 0, out
    spec2, _amd, _arm = make_inputs(base / 'v2', version='2024.07.0', values=b'replicas: 3\n')
    v2 = base / 'out' / 'shop-2024.07.0'
    rc, out = build(spec2, v2, key, '-e', 'bundle_base=' + str(v1))
    return {'base': base, 'key': key, 'signers': signers, 'v1': v1, 'v2': v2, 'rc': rc, 'out': out,
            'delta': base / 'out' / 'shop-2024.07.0-delta'}


def test_delta_holds_only_changed_files_and_records_base(deltas):
    assert deltas['rc'] == 0, deltas['out']
    v1, v2, delta = load_manifest(deltas['v1']), load_manifest(deltas['v2']), load_manifest(deltas['delta'])
    with open(str(deltas['v1'] / 'manifest.json'), 'rb') as f:
        v1_sha = sha(f.read())
    assert delta['base'] == {'name': 'shop', 'version': '2024.06.1', 'manifest_sha256': v1_sha}
    assert delta['files'] == v2['files'] and delta['version'] == '2024.07.0'
    base_hashes = set(e['sha256'] for e in v1['files'].values())
    changed = set(rel for rel, e in v2['files'].items() if e['sha256'] not in base_hashes)
    assert set(delta['delta']['present']) == changed
    assert 'apps/shop/1.4.0/values.yaml' in changed
    assert not any(rel.startswith(('artifacts/', 'images/')) for rel in changed)
    # the kit's collection tarball is rewritten reproducibly: the same collection is not shipped again
    assert not any(rel.startswith('kit/collections/') for rel in changed), sorted(changed)
    assert files_under(deltas['delta']) == changed | {'manifest.json', 'manifest.json.sig', 'kit.sha256', 'kit.sha256.sig'}
    assert 'delta: %s (%d files shipped)' % (deltas['delta'], len(changed)) in deltas['out']


def test_delta_applied_to_its_base_reconstructs_v2(deltas, tmp_path):
    assert deltas['rc'] == 0, deltas['out']
    dest = tmp_path / 'site' / 'shop-2024.07.0'
    dest.parent.mkdir()
    rc, out = module('bundle_verify', path=str(deltas['delta']), base=str(deltas['v1']), dest=str(dest),
                     allowed_signers=deltas['signers'])
    assert rc == 0, out
    assert files_under(dest) == files_under(deltas['v2'])
    for rel in files_under(dest) - {'manifest.json', 'manifest.json.sig'}:
        with open(str(dest / rel), 'rb') as a, open(str(deltas['v2'] / rel), 'rb') as b:
            assert a.read() == b.read(), rel
    # it keeps the delta's signed manifest (same files, base recorded), so it verifies on its own
    assert load_manifest(dest) == load_manifest(deltas['delta'])
    rc, out = module('bundle_verify', path=str(dest), allowed_signers=deltas['signers'])
    assert rc == 0 and 'complete: true' in out, out


def test_delta_on_the_wrong_base_is_refused(deltas, tmp_path):
    assert deltas['rc'] == 0, deltas['out']
    dest = tmp_path / 'shop-2024.07.0'
    rc, out = module('bundle_verify', path=str(deltas['delta']), base=str(deltas['v2']), dest=str(dest),
                     allowed_signers=deltas['signers'])
    assert rc != 0
    with open(str(deltas['v1'] / 'manifest.json'), 'rb') as f:
        want = sha(f.read())
    with open(str(deltas['v2'] / 'manifest.json'), 'rb') as f:
        have = sha(f.read())
    assert 'wrong base: the delta shop 2024.07.0 was built against shop 2024.06.1 (manifest sha256 %s)' % want in out
    assert 'holds shop 2024.07.0 (manifest sha256 %s)' % have in out
    assert not dest.exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- tars and chunks

@pytest.mark.parametrize('chunk', [None, '40K'])
def test_tar_and_chunks_verify(tmp_path, chunk):
    spec, _amd, _arm = make_inputs(tmp_path)
    key, signers = make_key(tmp_path)
    dest = tmp_path / 'out' / 'shop-2024.06.1'
    extra = ['-e', 'bundle_tar=true'] + (['-e', 'bundle_chunk_size=' + chunk] if chunk else [])
    rc, out = build(spec, dest, key, *extra)
    assert rc == 0, out
    tar = str(dest) + '.tar'
    if chunk:
        with open(tar + '.parts.json') as f:
            parts = json.load(f)
        names = sorted(n for n in os.listdir(str(dest.parent)) if n.startswith('shop-2024.06.1.tar.0'))
        assert [p['name'] for p in parts['parts']] == names and len(names) >= 2
        assert all(os.path.getsize(os.path.join(str(dest.parent), n)) <= 40 * 1024 for n in names)
        assert not os.path.exists(tar)
        whole = b''.join(open(os.path.join(str(dest.parent), n), 'rb').read() for n in names)
        assert sha(whole) == parts['sha256'] and len(whole) == parts['size']
        assert 'in %d chunks' % len(names) in out
        sources = [tar + '.000', tar + '.parts.json']
    else:
        assert os.path.isfile(tar) and not os.path.exists(tar + '.000')
        sources = [tar]
    site = tmp_path / 'site'
    site.mkdir()
    for i, source in enumerate(sources):
        rc, out = module('bundle_verify', path=source, dest=str(site / ('shop-%d' % i)), allowed_signers=signers)
        assert rc == 0, out
        assert files_under(site / ('shop-%d' % i)) == files_under(dest)
    if chunk:
        os.unlink(tar + '.001')
        rc, out = module('bundle_verify', path=tar + '.000', dest=str(site / 'broken'), allowed_signers=signers)
        assert rc != 0 and 'shop-2024.06.1.tar.001' in out and not (site / 'broken').exists()


# --------------------------------------------------------------------------- signing

def test_unsigned_build_is_refused_by_the_site(tmp_path):
    spec, _amd, _arm = make_inputs(tmp_path)
    _key, signers = make_key(tmp_path)
    dest = tmp_path / 'shop'
    rc, out = build(spec, dest, None, '-e', 'bundle_unsigned=true')
    assert rc == 0, out
    assert 'WARNING: building an UNSIGNED bundle' in out and 'UNSIGNED; verified:' in out
    assert (dest / 'manifest.json').is_file() and not (dest / 'manifest.json.sig').exists()
    rc, out = module('bundle_verify', path=str(dest), allowed_signers=signers)
    assert rc != 0
    assert 'signature %s is missing (require_signature is true)' % (dest / 'manifest.json.sig') in out
    rc, out = playbook('playbooks/verify.yml', '-e', 'bundle_dir=' + str(dest), '-e', 'bundle_allowed_signers=' + signers)
    assert rc != 0 and 'manifest.json.sig is missing' in out


def test_no_key_fails_and_leaves_nothing(tmp_path):
    spec, _amd, _arm = make_inputs(tmp_path)
    dest = tmp_path / 'shop'
    rc, out = build(spec, dest, None)
    assert rc != 0
    assert 'No signing key: give -e bundle_signing_key=KEY or signing.key in the spec' in out
    assert 'with -e bundle_unsigned=true' in out
    assert not dest.exists() and leftovers(tmp_path) == []
    assert sorted(os.listdir(str(tmp_path))) == ['in', 'spec.yml']


# --------------------------------------------------------------------------- registry with a password

REG_USER, REG_PASSWORD = 'ferry-bot', 'Pw-ferry-t3st-9xQ'


def test_registry_image_with_password(tmp_path):
    work = tmp_path / 'registry'
    work.mkdir()
    image = Image('x86_64', layers=[layer({'base': b'b' * 4096}), layer({'app': b'registry app'})])
    with run_registry(work, REG_USER, REG_PASSWORD) as host:
        push_image(host, 'demo/web', image, auth=(REG_USER, REG_PASSWORD), tag='1.0')
        images = [{'ref': REF, 'registry': {'ref': host + '/demo/web:1.0', 'username': REG_USER,
                                            'password': REG_PASSWORD}, 'arch': 'x86_64'}]
        spec, _amd, _arm = make_inputs(tmp_path, images=images)
        key, signers = make_key(tmp_path)
        dest = tmp_path / 'shop'
        # the most verbose output, with the JSON callback (every result whole, invocations included)
        rc, out = build(spec, dest, key, '-vvv', env={'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json'})
    assert rc == 0, out
    assert REG_PASSWORD not in out
    assert '"name": "ferry.airgap.bundle_build : Import images into the OCI store"' in out
    manifest = load_manifest(dest)
    assert manifest['images'][0]['ref'] == REF
    assert manifest['images'][0]['platforms'] == {'linux/amd64': digest(image.manifest())}
    for data in image.layers + [image.config, image.manifest()]:
        assert 'images/blobs/sha256/' + digest(data)[7:] in manifest['files']
    for rel in files_under(dest):
        with open(str(dest / rel), 'rb') as f:
            assert REG_PASSWORD.encode() not in f.read(), rel
    rc, out = module('bundle_verify', path=str(dest), allowed_signers=signers)
    assert rc == 0, out
