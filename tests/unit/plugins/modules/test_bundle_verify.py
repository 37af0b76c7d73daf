# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import io
import json
import os
import tarfile

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BLOB_DIR, MANIFEST, BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import digest_inventory
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import read_manifest, write_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pack import pack
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import sign
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._oci.sync import sync_images
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import build as build_module
from ansible_collections.ferry.airgap.plugins.modules import bundle_verify
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import (
    EM_AARCH64, EM_X86_64, bootstrap_like, elf, finish, make_bundle, make_delta, siblings, tree, write)
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import (
    Image, docker_legacy_entries, layer, write_tar)
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module


def signed_bundle(tmp_path, keys, name='shop-1.0', key='good'):
    root = make_bundle(tmp_path / name)
    manifest = finish(root, key=keys[key])
    return root, manifest


def args(keys, path, **kw):
    a = {'path': path, 'allowed_signers': keys['allowed'], 'identity': keys['identity']}
    a.update(kw)
    return a


def test_good_bundle(tmp_path, capsys, keys):
    root, manifest = signed_bundle(tmp_path, keys)
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 0 and result['changed'] is False and result['problems'] == []
    assert result['signature']['verified'] and result['signature']['principal'] == 'release@example'
    assert result['files_checked'] == len(manifest['files'])
    assert result['bytes_checked'] == sum(e['size'] for e in manifest['files'].values())
    assert result['complete'] and result['images'][0]['ref'] == 'registry.example/shop/web:1.0'
    assert 'mb_per_s' in result and result['seconds'] >= 0
    # the verified bundle comes back as the fact ferry_bundle (verify.yml no longer reads the manifest itself)
    assert result['ansible_facts']['ferry_bundle'] == {
        'dir': root, 'name': manifest['name'], 'version': manifest['version'], 'arches': manifest['arches'],
        'images': [i['ref'] for i in manifest['images']], 'versions': {},
        'arch_artifacts': {'x86_64': ['charts', 'k3s']},
        'layer_compressions': {'linux/amd64': ['none']},
        'artifacts': sorted(set(a['name'] for a in manifest['artifacts']), key=[a['name'] for a in manifest['artifacts']].index)}
    assert result['ansible_facts']['ferry_bundle']['artifacts']
    # check mode on a directory still verifies
    write(os.path.join(root, 'extra'), 'x')
    result, code = run_module(bundle_verify, args(keys, root), capsys, check_mode=True)
    assert code == 1 and result['problems'] == ['unlisted file: extra (not in the manifest)']


def test_a_signed_bundle_with_a_wrong_arch_binary_fails_and_sets_no_fact(tmp_path, capsys, keys, monkeypatch):
    """Signed by a builder without the arch check: every sha256 matches, the k3s for aarch64 is an x86_64 binary."""
    root = make_bundle(tmp_path / 'shop-1.0', k3s=elf(EM_X86_64), extra={'artifacts/aarch64/k3s/k3s': elf(EM_X86_64)})
    monkeypatch.setattr(build_module, 'artifact_arch_problem', lambda *args: None)
    finish(root, key=keys['good'], meta={'arches': ['x86_64', 'aarch64']})
    monkeypatch.undo()
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and result['failed']
    assert result['problems'] == [
        'artifact k3s for aarch64 is an x86_64 ELF binary (e_machine 62), not aarch64: artifacts/aarch64/k3s/k3s; '
        'put the aarch64 build in the spec (src and sha256), or declare this file for arch x86_64']
    assert 'ansible_facts' not in result
    # the right binary there: verified, and the fact says which artifacts each arch's hosts can get
    root = make_bundle(tmp_path / 'shop-1.1', k3s=elf(EM_X86_64), extra={'artifacts/aarch64/k3s/k3s': elf(EM_AARCH64)})
    finish(root, key=keys['good'], meta={'arches': ['x86_64', 'aarch64']})
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 0, result['msg']
    assert result['ansible_facts']['ferry_bundle']['arch_artifacts'] == {'x86_64': ['charts', 'k3s'],
                                                                         'aarch64': ['charts', 'k3s']}


def zstd_bundle(tmp_path, keys):
    """make_bundle's bundle plus an image imported from a docker-archive with zstd layers, signed."""
    root = make_bundle(tmp_path / 'shop-1.0')
    text = ''.join('line %d of a config file\n' % i for i in range(20000)).encode()
    archive = write_tar(tmp_path / 'app.tar', docker_legacy_entries([Image(layers=[layer({'etc/app.conf': text})])]))
    store = ImageStore(os.path.join(root, 'images'))
    sync_images(store, [{'ref': 'registry.example/shop/app:1.0', 'docker_archive': archive}], ['x86_64'], 'zstd')
    return root, finish(root, key=keys['good'], versions={'k3s': {'x86_64': 'v1.33.1+k3s1'}})


def test_zstd_layers_verify_and_show_in_the_fact(tmp_path, capsys, keys):
    root, manifest = zstd_bundle(tmp_path, keys)
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 0, result['msg']
    fact = result['ansible_facts']['ferry_bundle']
    assert fact['layer_compressions'] == {'linux/amd64': ['none', 'zstd']}
    assert fact['versions'] == {'k3s': {'x86_64': 'v1.33.1+k3s1'}}


def test_a_corrupt_zstd_layer_is_caught_at_verify(tmp_path, capsys, keys):
    root, manifest = zstd_bundle(tmp_path, keys)
    store = ImageStore(os.path.join(root, 'images'))
    top = store.entry('registry.example/shop/app:1.0')
    [plat] = store.children(top) if 'index' in top['mediaType'] else [top]
    layer_desc = store.read_json(plat['digest'])['layers'][0]
    assert layer_desc['mediaType'].endswith('+zstd')
    path = store.blob_path(layer_desc['digest'])
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2] ^= 0xff  # same size, broken stream
    os.chmod(path, 0o644)
    actual = write(path, bytes(data))
    rel = 'images/blobs/sha256/' + layer_desc['digest'][7:]
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and 'ansible_facts' not in result
    assert 'sha256 mismatch: %s: expected %s, actual %s' % (rel, layer_desc['digest'][7:], actual) in result['problems']


def test_flipped_byte(tmp_path, capsys, keys):
    root, manifest = signed_bundle(tmp_path, keys)
    path = os.path.join(root, 'apps/shop/1.0/values.yaml')
    actual = write(path, 'replicas: 2\n')
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and result['failed']
    expected = manifest['files']['apps/shop/1.0/values.yaml']['sha256']
    assert 'sha256 mismatch: apps/shop/1.0/values.yaml: expected %s, actual %s' % (expected, actual) in result['msg']
    assert len(result['problems']) == 1 and result['files_checked'] == len(manifest['files'])


def test_unknown_key_refused(tmp_path, capsys, keys):
    root, _manifest = signed_bundle(tmp_path, keys, key='bad')
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and 'Could not verify signature' in result['msg'] and result['files_checked'] == 0


def test_signature_requirements(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'b')
    finish(root)
    result, code = run_module(bundle_verify, {'path': root}, capsys)
    assert code == 1 and 'no allowed_signers' in result['msg']
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and 'manifest.json.sig is missing' in result['msg']
    result, code = run_module(bundle_verify, {'path': root, 'require_signature': False}, capsys)
    assert code == 0 and result['signature']['verified'] is False


def test_missing_blob_named(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'b')
    index = json.loads(open(os.path.join(root, 'images/index.json')).read())
    man = json.loads(open(os.path.join(root, BLOB_DIR, index['manifests'][0]['digest'][7:])).read())
    layer = man['layers'][0]['digest'][7:]
    os.unlink(os.path.join(root, BLOB_DIR, layer))
    finish(root, key=keys['good'])
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and 'image blob missing: %s/%s' % (BLOB_DIR, layer) in result['msg']


def test_chunked_tar_to_dest_and_rerun(tmp_path, capsys, keys):
    root, manifest = signed_bundle(tmp_path, keys)
    tar = str(tmp_path / 'media' / 'shop.tar')
    os.makedirs(os.path.dirname(tar))
    pack(root, tar, chunk_size=16384)
    dest = str(tmp_path / 'site' / 'shop-1.0')
    os.makedirs(os.path.dirname(dest))
    result, code = run_module(bundle_verify, args(keys, tar + '.000', dest=dest), capsys, check_mode=True)
    assert code == 0 and result['changed'] and not os.path.exists(dest)
    result, code = run_module(bundle_verify, args(keys, tar + '.000', dest=dest), capsys)
    assert code == 0 and result['changed'] and result['path'] == dest and result['problems'] == []
    assert tree(dest) == tree(root) and siblings(dest) == []
    result, code = run_module(bundle_verify, args(keys, tar + '.parts.json', dest=dest), capsys)
    assert code == 0 and result['changed'] is False
    # without dest the tar is verified in a temporary directory that is removed
    result, code = run_module(bundle_verify, args(keys, tar + '.000'), capsys)
    assert code == 0 and result['changed'] is False and result['files_checked'] == len(manifest['files'])


def test_truncated_tar(tmp_path, capsys, keys):
    root, _manifest = signed_bundle(tmp_path, keys)
    tar = str(tmp_path / 'shop.tar')
    pack(root, tar)
    with open(tar, 'r+b') as f:
        f.truncate(os.path.getsize(tar) // 2)
    dest = str(tmp_path / 'dest')
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 1 and 'cannot unpack' in result['msg'] and 'truncated' in result['msg']
    assert not os.path.exists(dest) and siblings(dest) == []


def test_tar_with_dotdot_member(tmp_path, capsys, keys):
    tar = str(tmp_path / 'evil.tar')
    with tarfile.open(tar, 'w') as t:
        info = tarfile.TarInfo('shop/../../pwned')
        info.size = 3
        t.addfile(info, io.BytesIO(b'abc'))
    dest = str(tmp_path / 'dest')
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 1 and 'shop/../../pwned' in result['msg'] and 'unsafe' in result['msg']
    assert not os.path.exists(dest) and not os.path.exists(str(tmp_path / 'pwned'))


def test_delta_with_base_reconstructs(tmp_path, capsys, keys):
    v1, v2, full, delta = make_delta(tmp_path, keys)
    # the delta alone: only its own files are checked
    result, code = run_module(bundle_verify, args(keys, delta), capsys)
    assert code == 0 and result['delta'] and result['complete'] is False
    assert result['files_checked'] == len(read_manifest(delta)[0]['delta']['present']) < len(full['files'])
    dest = str(tmp_path / 'shop-2.0-site')
    result, code = run_module(bundle_verify, args(keys, delta, base=v1, dest=dest), capsys)
    assert code == 0 and result['changed'] and result['complete'] and result['path'] == dest
    assert read_manifest(dest)[0]['files'] == full['files']
    result, code = run_module(bundle_verify, args(keys, delta, base=v1, dest=dest), capsys)
    assert code == 0 and result['changed'] is False
    # the reconstructed bundle verifies on its own as a full bundle
    result, code = run_module(bundle_verify, args(keys, dest), capsys)
    assert code == 0 and result['complete'] and result['files_checked'] == len(full['files'])


def test_delta_with_wrong_base(tmp_path, capsys, keys):
    v1, v2, full, delta = make_delta(tmp_path, keys)
    other = make_bundle(tmp_path / 'other', version='1.0', app_text='replicas: 9\n')
    finish(other, '0.9')
    dest = str(tmp_path / 'out')
    result, code = run_module(bundle_verify, args(keys, delta, base=other, dest=dest), capsys)
    assert code == 1 and 'wrong base' in result['msg']
    assert digest_inventory(v1)['manifest_sha256'] in result['msg']
    assert digest_inventory(other)['manifest_sha256'] in result['msg']
    assert 'shop 1.0' in result['msg'] and 'shop 0.9' in result['msg']
    assert not os.path.exists(dest) and siblings(dest) == []


# --- site-local paths: what ./bootstrap, the operator and Ansible add to an unpacked bundle -------------

SITE_LOCAL = ['.ansible/', '.ferry-site.record', '.ferry-venv/', 'collections/', 'inventory/group_vars/',
              'inventory/host_vars/', 'inventory/hosts.yml']


def test_bootstrapped_bundle_verifies(tmp_path, capsys, keys):
    root, manifest = signed_bundle(tmp_path, keys)
    bootstrap_like(root)
    assert any(os.path.islink(os.path.join(root, '.ferry-venv', n)) for n in os.listdir(os.path.join(root, '.ferry-venv')))
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 0, result['msg']
    assert result['problems'] == [] and result['site_local'] == SITE_LOCAL
    assert result['files_checked'] == len(manifest['files'])


def test_site_local_list_is_narrow(tmp_path, capsys, keys):
    root, _manifest = signed_bundle(tmp_path, keys)
    bootstrap_like(root)
    for rel in ('images/blobs/sha256/' + 'e' * 64, 'images/collections/x', 'apps/shop/1.0/.ferry-venv/x',
                'inventory/hosts.yml.bak', 'collections.tar', 'site.retry'):
        write(os.path.join(root, rel), 'smuggled')
    os.symlink('/etc/passwd', os.path.join(root, 'apps/shop/1.0/passwd'))
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and result['site_local'] == SITE_LOCAL
    assert sorted(result['problems']) == sorted([
        'apps/shop/1.0/passwd: symlinks are not allowed in a bundle (%s)' % root,
        'unlisted file: apps/shop/1.0/.ferry-venv/x (not in the manifest)',
        'unlisted file: collections.tar (not in the manifest)',
        'unlisted file: images/blobs/sha256/%s (not in the manifest)' % ('e' * 64),
        'unlisted file: images/collections/x (not in the manifest)',
        'unlisted file: inventory/hosts.yml.bak (not in the manifest)',
        'unlisted file: site.retry (not in the manifest)',
    ])
    # ignore_extra adds globs: a file pattern and a directory skipped whole
    os.unlink(os.path.join(root, 'apps/shop/1.0/passwd'))
    result, code = run_module(bundle_verify, args(keys, root, ignore_extra=[
        '*.retry', 'collections.tar', 'images/collections', 'apps/*/.ferry-venv/', 'inventory/*.bak']), capsys)
    assert code == 1 and result['problems'] == [
        'unlisted file: images/blobs/sha256/%s (not in the manifest)' % ('e' * 64)]
    assert result['site_local'] == sorted(SITE_LOCAL + [
        'apps/shop/1.0/.ferry-venv/', 'collections.tar', 'images/collections/', 'inventory/hosts.yml.bak', 'site.retry'])


def test_ignore_extra_must_be_relative(tmp_path, capsys, keys):
    root, _manifest = signed_bundle(tmp_path, keys)
    for bad in ('/etc/*', '../*'):
        result, code = run_module(bundle_verify, args(keys, root, ignore_extra=[bad]), capsys)
        assert code == 1 and 'ignore_extra' in result['msg'] and repr(bad) in result['msg']


def test_a_bundle_never_carries_site_local_paths(tmp_path, capsys, keys):
    # group_vars next to the inventory is code for Ansible (ansible_shell_executable): building refuses it...
    root = make_bundle(tmp_path / 'shop-1.0', extra={'inventory/group_vars/all.yml': 'ansible_shell_executable: /x\n'})
    with pytest.raises(BundleError, match='inventory/group_vars/all.yml: a bundle must not carry site-local paths'):
        finish(root, key=keys['good'])
    # ...and a manifest that lists it anyway (made by hand, signed by a trusted key) is invalid
    os.rename(os.path.join(root, 'inventory/group_vars/all.yml'), os.path.join(root, 'all.yml'))
    manifest = finish(root, key=keys['good'])
    manifest['files']['inventory/group_vars/all.yml'] = manifest['files'].pop('all.yml')
    os.rename(os.path.join(root, 'all.yml'), os.path.join(root, 'inventory/group_vars/all.yml'))
    write_manifest(str(root), manifest)
    sign(None, os.path.join(str(root), MANIFEST), keys['good'])
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1
    assert "files['inventory/group_vars/all.yml']: a bundle never carries site-local paths" in result['msg']


def test_tar_content_gets_no_site_local_pass(tmp_path, capsys, keys):
    root, _manifest = signed_bundle(tmp_path, keys)
    tar = str(tmp_path / 'shop.tar')
    pack(root, tar)
    with tarfile.open(tar, 'a') as tf:  # appended by someone with the medium: pack() refuses site-local paths
        info = tarfile.TarInfo('shop-1.0/collections/ansible_collections/ferry/airgap/plugins/modules/evil.py')
        info.size = 1
        tf.addfile(info, io.BytesIO(b'x'))
    dest = str(tmp_path / 'site' / 'shop-1.0')
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 1 and result['site_local'] == [] and 'does not exist' in result['msg']
    os.makedirs(os.path.dirname(dest))
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 1 and result['site_local'] == [], result['msg']
    assert result['problems'] == [
        'unlisted file: collections/ansible_collections/ferry/airgap/plugins/modules/evil.py (not in the manifest)']
    assert not os.path.exists(dest)


def test_unpacked_then_bootstrapped_dest_is_kept(tmp_path, capsys, keys):
    root, _manifest = signed_bundle(tmp_path, keys)
    tar = str(tmp_path / 'shop.tar')
    pack(root, tar)
    dest = str(tmp_path / 'site' / 'shop-1.0')
    os.makedirs(os.path.dirname(dest))
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 0 and result['changed']
    bootstrap_like(dest)
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 0 and result['changed'] is False and result['site_local'] == SITE_LOCAL
    assert os.path.isfile(os.path.join(dest, 'inventory/hosts.yml'))
    result, code = run_module(bundle_verify, args(keys, dest), capsys)
    assert code == 0 and result['site_local'] == SITE_LOCAL


# --------------------------------------------------------------------------- the kit's checksums, what bootstrap made

def test_kit_sums_must_match_the_manifest_and_be_signed_like_it(tmp_path, capsys, keys):
    root, manifest = signed_bundle(tmp_path, keys)
    sums = os.path.join(root, 'kit.sha256')
    with open(sums, 'rb') as fh:
        good = fh.read()
    # a line of kit.sha256 changed (as if to let a changed bootstrap pass sha256sum): its signature breaks too
    write(sums, good.replace(good[:64], b'0' * 64, 1))
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and result['problems'][0].startswith('kit.sha256 does not match the manifest (not in the manifest: ')
    write(sums, good)
    os.unlink(sums + '.sig')
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and result['problems'] == ['kit.sha256.sig is missing: the manifest is signed, so the kit must be too']
    sign(None, sums, keys['bad'])
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and 'signature verification of %s failed' % sums in result['problems'][0]
    os.unlink(sums)
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and result['problems'] == ['kit.sha256 is missing: a site could not check the kit before running it']


def test_code_bootstrap_did_not_make_is_a_problem(tmp_path, capsys, keys, site_key):
    root, _manifest = signed_bundle(tmp_path, keys)
    write(os.path.join(root, '.ferry-venv/bin/python'), '#!/bin/sh\ntouch /tmp/pwned\n')  # came with the medium
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and result['problems'] == [
        '.ferry-venv/: not made by ./bootstrap at this site (%s has no .ferry-site.record: ./bootstrap has not run '
        'there); remove .ferry-venv/ and run ./bootstrap' % root]
    bootstrap_like(root)  # now ./bootstrap made it (and recorded it with this site's key)
    assert run_module(bundle_verify, args(keys, root), capsys)[1] == 0
    write(os.path.join(root, '.ferry-venv/lib/evil.pth'), 'import os\n')
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and result['problems'] == ['.ferry-venv/lib/evil.pth: not in the site record of ./bootstrap (added)']
    # another site's key (or none) does not vouch for this record
    result, code = run_module(bundle_verify, args(keys, root, site_key=str(tmp_path / 'other.key')), capsys)
    assert code == 1 and 'site key %s does not exist' % (tmp_path / 'other.key') in result['problems'][0]


def test_a_dest_holding_code_bootstrap_did_not_make_is_not_carried_over(tmp_path, capsys, keys):
    root, _manifest = signed_bundle(tmp_path, keys)
    tar = str(tmp_path / 'shop.tar')
    pack(root, tar)
    dest = str(tmp_path / 'site' / 'shop')
    os.makedirs(dest)
    assert run_module(bundle_verify, args(keys, tar, dest=dest), capsys)[1] == 0
    write(os.path.join(dest, 'collections/ansible_collections/evil/x/plugins/filter/f.py'), 'import os\n')
    before = tree(dest)
    for check_mode in (True, False):
        result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys, check_mode=check_mode)
        assert code == 1 and 'holds code that ./bootstrap did not make at this site' in result['msg']
        assert 'collections/: not made by ./bootstrap at this site' in result['msg']
        assert tree(dest) == before and siblings(dest) == []
