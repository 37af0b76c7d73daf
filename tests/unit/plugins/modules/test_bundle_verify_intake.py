# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bundle_verify at intake (issue 9, items 2, 3, 4, 7): what a tar, a delta or a bundle directory from the
medium may do to the site. Each bad input ends in a message, with nothing changed on disk."""

import bz2
import contextlib
import gzip
import io
import json
import lzma
import os
import stat
import subprocess
import tarfile
import tempfile

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle import pack as pack_mod
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BLOB_DIR, MANIFEST
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import build_delta
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pack import pack
from ansible_collections.ferry.airgap.plugins.modules import bundle_verify
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import (
    bootstrap_like, finish, make_bundle, make_delta, siblings, tree, write)
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module

ROOT = os.geteuid() == 0


def args(keys, path, **kw):
    a = {'path': path, 'allowed_signers': keys['allowed'], 'identity': keys['identity']}
    a.update(kw)
    return a


def signed_tar(tmp_path, keys, key='good', extra=None, version='1.0', name='shop-1.0'):
    root = make_bundle(tmp_path / 'build' / name, version=version, extra=extra)
    manifest = finish(root, version, key=keys[key])
    tar = str(tmp_path / 'media' / (name + '.tar'))
    os.makedirs(os.path.dirname(tar), exist_ok=True)
    pack(root, tar)
    return root, manifest, tar


def append_members(tar, members):
    """Append ``{name: (bytes, mode)}`` to a finished tar, as someone with the medium would."""
    with tarfile.open(tar, 'a') as t:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            t.addfile(info, io.BytesIO(data))


def snapshot(path):
    """{relpath: (bytes or 'dir'/'link', mode)} of everything under ``path`` (nothing changed on disk: equal)."""
    out = {}
    for dirpath, dirs, files in os.walk(str(path)):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                with open(full, 'rb') as f:
                    content = f.read()
            else:
                content = 'link' if stat.S_ISLNK(st.st_mode) else 'dir'
            out[os.path.relpath(full, str(path))] = (content, stat.S_IMODE(st.st_mode))
    return out


@contextlib.contextmanager
def small_fs(size):
    """A real tmpfs of ``size`` (e.g. '4m'), or a skip where mounting is not possible."""
    where = tempfile.mkdtemp(prefix='ferry-small-fs-')
    try:
        if not ROOT or subprocess.call(['mount', '-t', 'tmpfs', '-o', 'size=%s' % size, 'tmpfs', where]) != 0:
            pytest.skip('cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)')
        try:
            yield where
        finally:
            subprocess.call(['umount', '-l', where])
    finally:
        os.rmdir(where)


# ---------------------------------------------------------------- item 2: tar intake


def test_signature_is_checked_before_anything_is_extracted(tmp_path, capsys, keys, monkeypatch):
    _root, _manifest, tar = signed_tar(tmp_path, keys, key='bad')
    seen = []
    real = bundle_verify.verify_signature

    def spy(runner, manifest_path, *a, **kw):
        seen.append(sorted(os.listdir(os.path.dirname(manifest_path))))
        return real(runner, manifest_path, *a, **kw)
    monkeypatch.setattr(bundle_verify, 'verify_signature', spy)
    dest = str(tmp_path / 'site' / 'shop-1.0')
    os.makedirs(os.path.dirname(dest))
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 1 and 'Could not verify signature' in result['msg']
    # when the signature was checked, only the manifest and its signature were on disk
    assert seen == [['manifest.json', 'manifest.json.sig']]
    assert os.listdir(os.path.dirname(dest)) == []


def test_unlisted_members_are_reported_never_extracted(tmp_path, capsys, keys, monkeypatch):
    root, _manifest, tar = signed_tar(tmp_path, keys)
    append_members(tar, {'shop-1.0/.ferry-venv/bin/python': (b'#!/bin/sh\nevil\n', 0o755),
                         'shop-1.0/inventory/group_vars/all.yml': (b'ansible_shell_executable: /tmp/x\n', 0o644)})
    extracted = []
    real = bundle_verify.verify_bundle

    def spy(bundle_dir, *a, **kw):
        extracted.append(tree(bundle_dir))
        return real(bundle_dir, *a, **kw)
    monkeypatch.setattr(bundle_verify, 'verify_bundle', spy)
    dest = str(tmp_path / 'site' / 'shop-1.0')
    os.makedirs(os.path.dirname(dest))
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 1 and sorted(result['problems']) == [
        'unlisted file: .ferry-venv/bin/python (not in the manifest)',
        'unlisted file: inventory/group_vars/all.yml (not in the manifest)']
    assert extracted and all(not any(rel.startswith(('.ferry-venv', 'inventory/group_vars')) for rel in t)
                             for t in extracted)
    assert not os.path.exists(dest) and siblings(dest) == []


def test_member_of_the_wrong_size_is_not_written(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'build' / 'shop-1.0')
    manifest = finish(root)
    listed = manifest['files']['artifacts/x86_64/k3s/k3s']['size']
    tar = str(tmp_path / 'shop.tar')
    with tarfile.open(tar, 'w') as t:  # by hand: the manifest last, the k3s member 4 MiB
        for rel in sorted(manifest['files']) + [MANIFEST]:
            data = open(os.path.join(root, rel), 'rb').read()
            if rel == 'artifacts/x86_64/k3s/k3s':
                data = b'\0' * (4 << 20)
            info = tarfile.TarInfo('shop-1.0/' + rel)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    dest = str(tmp_path / 'dest')
    result, code = run_module(bundle_verify, {'path': tar, 'dest': dest, 'require_signature': False}, capsys)
    assert code == 1
    assert 'size mismatch: artifacts/x86_64/k3s/k3s: expected %d bytes, actual %d bytes in the tar (not extracted)' % (
        listed, 4 << 20) in result['problems']
    assert not os.path.exists(dest) and siblings(dest) == []


def test_manifest_anywhere_in_the_tar_and_duplicates(tmp_path, capsys, keys):
    root, manifest, _tar = signed_tar(tmp_path, keys)
    tar = str(tmp_path / 'by-hand.tar')
    with tarfile.open(tar, 'w') as t:  # files first, manifest and signature last: still read first
        for rel in sorted(manifest['files']) + ['kit.sha256', 'kit.sha256.sig', 'manifest.json', 'manifest.json.sig']:
            t.add(os.path.join(root, rel), 'shop-1.0/' + rel)
    dest = str(tmp_path / 'dest')
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
    assert code == 0 and result['changed'] and tree(dest) == tree(root)
    # a second copy of a listed member (tar -x would keep the later one) is refused
    append_members(tar, {'shop-1.0/install.yml': (b'- hosts: all\n', 0o644)})
    dest2 = str(tmp_path / 'dest2')
    result, code = run_module(bundle_verify, args(keys, tar, dest=dest2), capsys)
    assert code == 1 and result['problems'] == [
        'install.yml: more than one member of this name in the tar (the later one is not extracted)']
    assert not os.path.exists(dest2) and siblings(dest2) == []


def _zeros_tar(size):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w') as t:
        info = tarfile.TarInfo('shop/zeros')
        info.size = size
        t.addfile(info, io.BytesIO(b'\0' * size))
    return out.getvalue()


@pytest.mark.parametrize('kind, compress', [
    ('gzip', gzip.compress), ('bzip2', bz2.compress), ('xz', lzma.compress)])
def test_compressed_input_is_refused(tmp_path, capsys, keys, kind, compress):
    bomb = str(tmp_path / 'shop.tar')  # a small bomb named .tar: 32 MiB of zeros
    with open(bomb, 'wb') as f:
        f.write(compress(_zeros_tar(32 << 20)))
    assert os.path.getsize(bomb) < 256 * 1024
    dest = str(tmp_path / 'site' / 'dest')
    os.makedirs(os.path.dirname(dest))
    result, code = run_module(bundle_verify, args(keys, bomb, dest=dest), capsys)
    assert code == 1
    assert "'%s' is %s-compressed: expected an uncompressed tar" % (bomb, kind) in result['msg']
    assert os.listdir(str(tmp_path / 'site')) == []


def test_sparse_tar_refused_on_a_small_filesystem(tmp_path, capsys, keys):
    src = tmp_path / 'src' / 'shop'
    os.makedirs(str(src))
    with open(str(src / 'disk.img'), 'wb') as f:
        f.truncate(64 << 20)  # 64 MiB, all holes
    tar = str(tmp_path / 'sparse.tar')
    subprocess.check_call(['tar', '--sparse', '-cf', tar, '-C', str(tmp_path / 'src'), 'shop'])
    assert os.path.getsize(tar) < 64 * 1024
    with small_fs('16m') as fs:
        dest = os.path.join(fs, 'shop')
        result, code = run_module(bundle_verify, {'path': tar, 'dest': dest, 'require_signature': False}, capsys)
        assert code == 1 and 'sparse members are not allowed' in result['msg'] and 'shop/disk.img' in result['msg']
        assert os.listdir(fs) == []


def test_huge_tar_header_is_refused_not_read(tmp_path, capsys, monkeypatch):
    # a pax header record tarfile would read whole into memory, before any signature could be checked
    monkeypatch.setattr(pack_mod, 'MAX_TAR_READ', 1 << 20, raising=False)
    tar = str(tmp_path / 'header.tar')
    pax = tarfile.TarInfo('././@PaxHeader')
    pax.type = tarfile.XHDTYPE
    pax.size = 4 << 20
    with open(tar, 'wb') as f:
        f.write(pax.tobuf(tarfile.USTAR_FORMAT))
        f.write(b'9 a=b\n' * (pax.size // 6) + b'\n' * (pax.size % 6))
        f.write(b'\0' * 1024)
    dest = str(tmp_path / 'dest')
    result, code = run_module(bundle_verify, {'path': tar, 'dest': dest, 'require_signature': False}, capsys)
    assert code == 1 and 'a tar header record of %d bytes at offset 512: expected at most %d bytes' % (
        4 << 20, 1 << 20) in result['msg']
    assert not os.path.exists(dest) and siblings(dest) == []


def test_disk_full_is_a_message_naming_the_filesystem(tmp_path, capsys, keys, monkeypatch):
    _root, _manifest, tar = signed_tar(tmp_path, keys, extra={'images/big.bin': os.urandom(3 << 20)})
    with small_fs('2m') as fs:
        dest = os.path.join(fs, 'shop-1.0')
        # refused before writing: the listed files do not fit
        result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
        assert code == 1 and 'no space left on the filesystem mounted at %s' % fs in result['msg']
        assert os.listdir(fs) == []
        # and when the space goes while writing (another writer), the same message, nothing left behind
        monkeypatch.setattr(pack_mod, 'check_free', lambda *a: None, raising=False)
        result, code = run_module(bundle_verify, args(keys, tar, dest=dest), capsys)
        assert code == 1 and 'no space left on the filesystem mounted at %s' % fs in result['msg']
        assert os.listdir(fs) == []


# ---------------------------------------------------------------- item 3: dest guard


def _not_a_bundle(tmp_path):
    opt = tmp_path / 'opt' / 'ferry'
    write(str(opt / 'bundles' / 'keep.txt'), 'precious\n')
    write(str(opt / 'etc' / 'allowed_signers'), 'release@example ssh-ed25519 AAAA\n')
    return str(opt)


def test_tar_never_replaces_a_directory_that_is_not_a_bundle(tmp_path, capsys, keys):
    _root, _manifest, tar = signed_tar(tmp_path, keys)
    opt = _not_a_bundle(tmp_path)
    before = snapshot(opt)
    for check_mode in (True, False):
        result, code = run_module(bundle_verify, args(keys, tar, dest=opt), capsys, check_mode=check_mode)
        assert code == 1 and result['changed'] is False
        assert '%s exists, is not empty and holds no manifest.json: refusing to replace it with a bundle' % opt \
            in result['msg']
        assert snapshot(opt) == before and siblings(opt) == []
    target = str(tmp_path / 'a-file')
    write(target, 'data')
    result, code = run_module(bundle_verify, args(keys, tar, dest=target), capsys)
    assert code == 1 and 'is not a directory' in result['msg'] and open(target).read() == 'data'


def test_delta_never_replaces_a_directory_that_is_not_a_bundle(tmp_path, capsys, keys):
    v1, _v2, _full, delta = make_delta(tmp_path, keys)
    opt = _not_a_bundle(tmp_path)
    before = snapshot(opt)
    for check_mode in (True, False):
        result, code = run_module(bundle_verify, args(keys, delta, base=v1, dest=opt), capsys, check_mode=check_mode)
        assert code == 1 and 'holds no manifest.json: refusing to replace it' in result['msg']
        assert snapshot(opt) == before and siblings(opt) == []


SITE = ['.ansible/', '.ferry-site.record', '.ferry-venv/', 'collections/', 'inventory/group_vars/', 'inventory/host_vars/',
        'inventory/hosts.yml']


def _site_files(root):
    return dict((rel, data) for rel, data in tree(root).items()
                if rel.startswith(('.ansible', '.ferry-site.record', '.ferry-venv', 'collections', 'inventory/hosts.yml',
                                   'inventory/group_vars', 'inventory/host_vars')))


def test_new_version_over_a_bootstrapped_bundle_keeps_the_site_files(tmp_path, capsys, keys):
    _r1, _m1, tar1 = signed_tar(tmp_path, keys)
    root2, _m2, tar2 = signed_tar(tmp_path, keys, version='2.0', name='shop-2.0')
    dest = str(tmp_path / 'site' / 'current')
    os.makedirs(os.path.dirname(dest))
    result, code = run_module(bundle_verify, args(keys, tar1, dest=dest), capsys)
    assert code == 0 and result['changed']
    bootstrap_like(dest, venv=False)
    site = _site_files(dest)
    result, code = run_module(bundle_verify, args(keys, tar2, dest=dest), capsys)
    assert code == 0 and result['changed'] and result['version'] == '2.0'
    assert result['carried_over'] == SITE
    assert _site_files(dest) == site
    assert dict((k, v) for k, v in tree(dest).items() if k not in site) == tree(root2)
    assert siblings(dest) == []
    # the new bundle with the carried-over files verifies on its own
    result, code = run_module(bundle_verify, args(keys, dest), capsys)
    assert code == 0 and result['site_local'] == SITE


def test_delta_over_a_bootstrapped_bundle_keeps_the_site_files(tmp_path, capsys, keys):
    v1, _v2, full, delta = make_delta(tmp_path, keys)
    dest = str(tmp_path / 'site')
    assert run_module(bundle_verify, args(keys, delta, base=v1, dest=dest), capsys)[1] == 0
    bootstrap_like(dest, venv=False)
    site = _site_files(dest)
    os.unlink(os.path.join(dest, MANIFEST))  # now a different bundle sits at dest: the rebuild replaces it
    write(os.path.join(dest, MANIFEST), json.dumps({'format': 1, 'files': {}}))
    result, code = run_module(bundle_verify, args(keys, delta, base=v1, dest=dest), capsys)
    assert code == 0 and result['changed'] and result['carried_over'] == SITE
    assert _site_files(dest) == site and siblings(dest) == []


# ---------------------------------------------------------------- item 4: modes and owners


def test_tar_member_modes_and_owners_are_not_kept(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'build' / 'shop-1.0')
    manifest = finish(root)
    tar = str(tmp_path / 'shop.tar')
    with tarfile.open(tar, 'w') as t:
        for i, rel in enumerate([MANIFEST, 'kit.sha256'] + sorted(manifest['files'])):
            info = t.gettarinfo(os.path.join(root, rel), 'shop-1.0/' + rel)
            info.mode = (0o777, 0o666, 0o4755)[i % 3]
            info.uid, info.gid, info.uname, info.gname = 1234, 1234, 'evil', 'evil'
            with open(os.path.join(root, rel), 'rb') as f:
                t.addfile(info, f)
    dest = str(tmp_path / 'dest')
    result, code = run_module(bundle_verify, {'path': tar, 'dest': dest, 'require_signature': False}, capsys)
    assert code == 0, result['msg']
    for dirpath, dirs, files in os.walk(dest):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            assert stat.S_IMODE(st.st_mode) in (0o644, 0o755), (name, oct(st.st_mode))
            if ROOT:
                assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(os.stat(os.path.join(dest, 'install.yml')).st_mode) in (0o644, 0o755)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o755


def _from_base(delta, full):
    present = set(json.load(open(os.path.join(delta, MANIFEST)))['delta']['present'])
    return [rel for rel in sorted(full['files']) if rel not in present]


def _same_inode(a, b):
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


@pytest.mark.skipif(not ROOT, reason='needs root to give files another owner')
def test_delta_never_hard_links_what_someone_else_can_write(tmp_path, capsys, keys):
    v1, _v2, full, delta = make_delta(tmp_path, keys)
    for dirpath, dirs, files in os.walk(v1):  # the base belongs to another user
        for name in dirs + files:
            os.chown(os.path.join(dirpath, name), 1234, 1234)
    dest = str(tmp_path / 'site')
    result, code = run_module(bundle_verify, args(keys, delta, base=v1, dest=dest), capsys)
    assert code == 0, result['msg']
    assert _from_base(delta, full)
    for rel in _from_base(delta, full):
        st = os.stat(os.path.join(dest, rel))
        assert st.st_nlink == 1 and (st.st_uid, st.st_gid) == (0, 0), rel
        assert stat.S_IMODE(st.st_mode) in (0o644, 0o755)


@pytest.mark.skipif(not ROOT, reason='needs root to tell root-owned files from others')
def test_delta_hard_links_only_from_directories_no_one_else_can_write(tmp_path, capsys, keys):
    v1, _v2, full, delta = make_delta(tmp_path, keys)
    for dirpath, dirs, files in os.walk(v1):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    os.chmod(os.path.join(v1, 'apps/shop/1.0/templates'), 0o777)  # anyone may swap files here
    dest = str(tmp_path / 'site')
    result, code = run_module(bundle_verify, args(keys, delta, base=v1, dest=dest), capsys)
    assert code == 0, result['msg']
    assert 'apps/shop/2.0/templates/deploy.yaml' in _from_base(delta, full)
    assert not _same_inode(os.path.join(dest, 'apps/shop/2.0/templates/deploy.yaml'),
                           os.path.join(v1, 'apps/shop/1.0/templates/deploy.yaml'))
    # root's files in root's directories are still linked (no copy where none is needed)
    for rel in ('install.yml', 'artifacts/x86_64/k3s/k3s'):
        assert _same_inode(os.path.join(dest, rel), os.path.join(v1, rel)), rel


@pytest.mark.skipif(not ROOT, reason='needs root to give files another owner')
def test_build_side_delta_copies_files_of_another_owner(tmp_path, keys):
    v1 = make_bundle(tmp_path / 'shop-1.0')
    finish(v1)
    v2 = make_bundle(tmp_path / 'shop-2.0', version='2.0', app_text='replicas: 3\n')
    finish(v2, '2.0')
    os.chown(os.path.join(v2, 'apps/shop/2.0/values.yaml'), 1234, 1234)
    os.chmod(os.path.join(v2, 'apps/shop/2.0/values.yaml'), 0o666)
    delta = str(tmp_path / 'delta')
    build_delta(v2, v1, delta)
    st = os.stat(os.path.join(delta, 'apps/shop/2.0/values.yaml'))
    assert st.st_nlink == 1 and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)


# ---------------------------------------------------------------- item 7: special files, malformed input


@pytest.mark.parametrize('kind', ['dev-zero', 'fifo'])
def test_manifest_that_is_not_a_regular_file(tmp_path, capsys, keys, kind):
    root = make_bundle(tmp_path / 'b')
    finish(root, key=keys['good'])
    manifest = os.path.join(root, MANIFEST)
    os.unlink(manifest)
    if kind == 'fifo':
        os.mkfifo(manifest)
    else:
        os.symlink('/dev/zero', manifest)
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1
    expected = 'actual a fifo' if kind == 'fifo' else 'actual a symlink'
    assert '%s: expected a regular file, %s' % (manifest, expected) in result['msg']


@pytest.mark.parametrize('kind', ['dev-zero', 'fifo'])
def test_blob_that_is_not_a_regular_file(tmp_path, capsys, keys, kind):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root, key=keys['good'])
    index = json.load(open(os.path.join(root, 'images/index.json')))
    blob = os.path.join(root, BLOB_DIR, index['manifests'][0]['digest'][7:])
    os.unlink(blob)
    if kind == 'fifo':
        os.mkfifo(blob)
    else:
        os.symlink('/dev/zero', blob)
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    rel = os.path.relpath(blob, root)
    assert code == 1 and 'missing file: %s' % rel in result['msg']
    assert ('%s: symlinks are not allowed' % rel if kind == 'dev-zero' else '%s: not a regular file' % rel) \
        in result['msg']
    assert manifest['files'][rel]


@pytest.mark.parametrize('change, message', [
    (lambda m: m.update(artifacts=['k3s']), 'artifacts[0]: expected an object, actual a string'),
    (lambda m: m['artifacts'][0].update(path=['x']), "artifacts[0].path: expected a string, actual a list ['x']"),
    (lambda m: m['artifacts'][0].pop('sha256'), 'artifacts[0].sha256: required key missing'),
    (lambda m: m['images'][0].update(platforms=['linux/amd64']), 'images[0].platforms: expected an object'),
    (lambda m: m['images'][0].pop('digest'), 'images[0].digest: required key missing'),
    (lambda m: m['apps'][0].update(name=7), 'apps[0].name: expected a string, actual an integer 7'),
    (lambda m: m.update(apps={'shop': 1}), 'apps: expected a list, actual an object'),
    (lambda m: m['files']['install.yml'].update(size=True), "files['install.yml']: expected"),
    (lambda m: m['files'].update({'install.yml/x': m['files']['install.yml']}),
     "files lists 'install.yml' both as a file and as a directory"),
    (lambda m: m.update(delta={'present': [['x']]}, base={'manifest_sha256': 'a' * 64}),
     "delta.present: expected paths (strings), actual a list ['x']"),
    (lambda m: m.update(name=['shop']), "name: expected a string, actual a list ['shop']"),
])
def test_malformed_manifest_is_a_message(tmp_path, capsys, keys, change, message):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root)
    change(manifest)
    write(os.path.join(root, MANIFEST), json.dumps(manifest))
    result, code = run_module(bundle_verify, {'path': root, 'require_signature': False}, capsys)
    assert code == 1 and message in result['msg'], result['msg']


@pytest.mark.parametrize('digest', [['sha256:' + 'a' * 64], {'x': 1}, 7, None])
def test_malformed_index_digest_is_a_problem(tmp_path, capsys, keys, digest):
    root = make_bundle(tmp_path / 'b')
    index_path = os.path.join(root, 'images/index.json')
    index = json.load(open(index_path))
    index['manifests'].append({'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': digest})
    index['manifests'].append({'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'size': 3})
    write(index_path, json.dumps(index))
    finish(root, key=keys['good'])
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 1 and 'images/index.json references an invalid digest %r' % (digest,) in result['problems']
    assert 'images/index.json references an invalid digest None' in result['problems']


def test_oversized_index_is_a_problem_not_a_read(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'b')
    finish(root)
    index_path = os.path.join(root, 'images/index.json')
    os.unlink(index_path)
    os.symlink('/dev/zero', index_path)
    result, code = run_module(bundle_verify, {'path': root, 'require_signature': False}, capsys)
    assert code == 1 and 'images/index.json' in result['msg']


@pytest.mark.parametrize('members, reason', [
    ([('shop/hard', tarfile.LNKTYPE, 'shop/missing')], 'unlisted file: hard (not in the manifest)'),
    ([('shop/self', tarfile.SYMTYPE, 'self')], 'unlisted file: self (not in the manifest)'),
    ([('shop/a', tarfile.REGTYPE, ''), ('shop/a', tarfile.DIRTYPE, '')], 'unlisted file: a (not in the manifest)'),
    ([('shop/install.yml', tarfile.REGTYPE, ''), ('shop/install.yml/x', tarfile.REGTYPE, '')],
     'size mismatch: install.yml: expected 13 bytes, actual 0 bytes in the tar'),
    ([('shop/install.yml', tarfile.SYMTYPE, 'manifest.json')], 'install.yml: a symlink in the tar'),
    ([('shop/install.yml', tarfile.LNKTYPE, 'shop/manifest.json')], 'install.yml: a hardlink in the tar'),
])
def test_odd_tar_links_are_messages(tmp_path, capsys, keys, members, reason):
    root = make_bundle(tmp_path / 'build' / 'shop')
    manifest = finish(root)
    tar = str(tmp_path / 'odd.tar')
    with tarfile.open(tar, 'w') as t:
        t.add(os.path.join(root, MANIFEST), 'shop/' + MANIFEST)
        for rel in sorted(manifest['files']):
            if rel != 'install.yml':
                t.add(os.path.join(root, rel), 'shop/' + rel)
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            t.addfile(info, io.BytesIO(b'') if kind == tarfile.REGTYPE else None)
    dest = str(tmp_path / 'dest')
    result, code = run_module(bundle_verify, {'path': tar, 'dest': dest, 'require_signature': False}, capsys)
    assert code == 1 and reason in result['msg'], result['msg']
    assert not os.path.exists(dest) and siblings(dest) == []


def test_chunk_list_that_is_not_a_regular_file(tmp_path, capsys, keys):
    _root, _manifest, tar = signed_tar(tmp_path, keys)
    parts = tar + '.parts.json'
    os.symlink('/dev/zero', parts)
    result, code = run_module(bundle_verify, args(keys, parts, dest=str(tmp_path / 'd')), capsys)
    assert code == 1 and '%s: expected a regular file' % parts in result['msg'] and 'actual a symlink' in result['msg']
    fifo = str(tmp_path / 'fifo.tar')
    os.mkfifo(fifo)
    result, code = run_module(bundle_verify, args(keys, fifo, dest=str(tmp_path / 'd')), capsys)
    assert code == 1 and '%s: expected a regular file' % fifo in result['msg'] and 'a special file' in result['msg']


# ---------------------------------------------------------------- the fact comes from what was verified


def test_fact_is_the_verified_manifest_not_a_second_read(tmp_path, capsys, keys, monkeypatch):
    root = make_bundle(tmp_path / 'shop-1.0')
    finish(root, key=keys['good'])
    real = bundle_verify.verify_bundle

    def verify_then_swap(bundle_dir, manifest, *a, **kw):
        problems = real(bundle_dir, manifest, *a, **kw)
        swapped = dict(manifest, name='evil', version='6.6.6', images=[{'ref': 'evil.example/x:1', 'digest': 'x'}])
        write(os.path.join(bundle_dir, MANIFEST), json.dumps(swapped))  # changed after it was verified
        return problems
    monkeypatch.setattr(bundle_verify, 'verify_bundle', verify_then_swap)
    result, code = run_module(bundle_verify, args(keys, root), capsys)
    assert code == 0
    fact = result['ansible_facts']['ferry_bundle']
    assert (fact['name'], fact['version'], fact['images']) == ('shop', '1.0', ['registry.example/shop/web:1.0'])
