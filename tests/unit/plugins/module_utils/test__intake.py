# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The primitives bundle intake stands on (issue 9, items 2, 3, 4, 7): bounded reads of regular files only,
copies and hard links that nobody else can change, tar members checked and written with fixed modes, the OCI
store and the manifest read without trusting their structure, the destination guard."""

import errno
import io
import json
import os
import stat
import tarfile

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils import _fs
from ansible_collections.ferry.airgap.plugins.module_utils import _safetar
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import manifest as M
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import verify as V
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.site import site_local_paths
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import finish, make_bundle, tree, write

ROOT = os.geteuid() == 0


# ---------------------------------------------------------------- _fs: regular files only, bounded


def test_read_file_refuses_special_files_and_oversize(tmp_path):
    f = str(tmp_path / 'f')
    write(f, b'x' * 100)
    assert _fs.read_file(f, 100) == b'x' * 100
    with pytest.raises(_fs.FsError, match=r'too large: expected at most 99 bytes, actual 100 bytes or more'):
        _fs.read_file(f, 99)
    zero = str(tmp_path / 'zero')
    os.symlink('/dev/zero', zero)
    with pytest.raises(_fs.FsError, match='expected a regular file, actual a symlink'):
        _fs.read_file(zero)
    with pytest.raises(_fs.FsError, match='expected a regular file, actual a character device'):
        _fs.read_file('/dev/zero')
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    with pytest.raises(_fs.FsError, match='expected a regular file, actual a fifo'):
        _fs.read_file(fifo)  # does not block
    assert _fs.read_bytes(fifo) is None and _fs.read_bytes(zero) is None and _fs.read_bytes(f, 10) is None
    assert _fs.read_bytes(f) == b'x' * 100


def test_copy_file_fixed_modes_and_owner(tmp_path):
    for mode, expected in ((0o777, 0o755), (0o666, 0o644), (0o4750, 0o755), (0o600, 0o644)):
        src = str(tmp_path / ('src-%o' % mode))
        write(src, b'data')
        os.chmod(src, mode)
        dst = str(tmp_path / ('dst-%o' % mode))
        _fs.copy_file(src, dst)
        st = os.stat(dst)
        assert stat.S_IMODE(st.st_mode) == expected and open(dst, 'rb').read() == b'data'
        if ROOT:
            assert (st.st_uid, st.st_gid) == (0, 0)
    link = str(tmp_path / 'link')
    os.symlink('/dev/zero', link)
    with pytest.raises(_fs.FsError, match='actual a symlink'):
        _fs.copy_file(link, str(tmp_path / 'never'))
    assert not os.path.exists(str(tmp_path / 'never'))


def test_copy_file_disk_full_names_the_filesystem_and_leaves_nothing(tmp_path, monkeypatch):
    src = str(tmp_path / 'src')
    write(src, b'data' * 1000)

    def full(*a):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(_fs.shutil, 'copyfileobj', full)
    with pytest.raises(_fs.FsError) as err:
        _fs.copy_file(src, str(tmp_path / 'dst'))
    assert 'no space left on the filesystem mounted at %s' % _fs.mount_point(str(tmp_path)) in str(err.value)
    assert sorted(os.listdir(str(tmp_path))) == ['src']


@pytest.mark.skipif(not ROOT, reason='needs root to give files another owner')
def test_link_or_copy_links_only_what_nobody_else_can_change(tmp_path):
    safe = tmp_path / 'safe'
    os.makedirs(str(safe))
    os.chmod(str(safe), 0o755)
    cases = {'ok': (0, 0o644, True), 'exe': (0, 0o755, True), 'other-owner': (1234, 0o644, False),
             'group-writable': (0, 0o664, False), 'setuid': (0, 0o4755, False)}
    for name, (uid, mode, linked) in sorted(cases.items()):
        src = str(safe / name)
        write(src, name)
        os.chown(src, uid, uid)
        os.chmod(src, mode)
        dst = str(tmp_path / 'out' / name)
        _fs.link_or_copy(src, dst)
        assert (os.stat(dst).st_ino == os.stat(src).st_ino) is linked, name
        if not linked:
            st = os.stat(dst)
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755 if mode & 0o111 else 0o644), name
    shared = tmp_path / 'shared'
    os.makedirs(str(shared))
    os.chmod(str(shared), 0o1777)  # /tmp-like: anyone may add and (own files) swap
    write(str(shared / 'f'), 'x')
    os.chmod(str(shared / 'f'), 0o644)
    _fs.link_or_copy(str(shared / 'f'), str(tmp_path / 'out' / 'f'))
    assert os.stat(str(tmp_path / 'out' / 'f')).st_nlink == 1


# ---------------------------------------------------------------- _safetar


def _tar(path, members, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(path, 'w', format=fmt) as t:
        for name, kind, link, data, mode in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = kind, link, mode
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def test_sparse_member_refused(tmp_path):
    member = tarfile.TarInfo('disk.img')
    member.type = tarfile.GNUTYPE_SPARSE
    member.sparse = [(0, 0)]
    with pytest.raises(_safetar.UnsafeTarError, match='sparse members are not allowed'):
        _safetar.check_member(member, 'x.tar')


@pytest.mark.parametrize('head, kind', [(b'\x1f\x8b\x08', 'gzip'), (b'BZh91AY', 'bzip2'),
                                        (b'\xfd7zXZ\x00\x00', 'xz'), (b'\x28\xb5\x2f\xfd\x00', 'zstd')])
def test_open_tar_plain_only(tmp_path, head, kind):
    path = str(tmp_path / 'x.tar')
    write(path, head + b'\0' * 600)
    with pytest.raises(_safetar.CompressedTarError, match="is %s-compressed: expected an uncompressed tar" % kind):
        _safetar.open_tar(path, compressed=False)


@pytest.mark.parametrize('members, reason', [
    ([('hard', tarfile.LNKTYPE, 'missing', b'', 0o644)], "hardlink target 'missing' is not in the archive"),
    ([('self', tarfile.SYMTYPE, 'self', b'', 0o777)], 'link loop'),
    ([('a', tarfile.SYMTYPE, 'b', b'', 0o777), ('b', tarfile.SYMTYPE, 'a', b'', 0o777)], 'link loop'),
    ([('d', tarfile.DIRTYPE, '', b'', 0o755), ('l', tarfile.SYMTYPE, 'd', b'', 0o777)], 'not a regular file'),
])
def test_member_reader_odd_links(tmp_path, members, reason):
    path = _tar(str(tmp_path / 'x.tar'), members)
    with _safetar.open_tar(path) as tar:
        last = list(_safetar.iter_members(tar, path))[-1]
        with pytest.raises(_safetar.UnsafeTarError, match=reason):
            _safetar.member_reader(tar, last, path).read()


def test_safe_extract_fixed_modes_and_conflicts(tmp_path):
    path = _tar(str(tmp_path / 'x.tar'), [('d', tarfile.DIRTYPE, '', b'', 0o777),
                                          ('d/exe', tarfile.REGTYPE, '', b'#!', 0o4777),
                                          ('d/data', tarfile.REGTYPE, '', b'x', 0o666)])
    dest = tmp_path / 'out'
    _safetar.safe_extract(path, str(dest))
    assert [stat.S_IMODE(os.stat(str(dest / n)).st_mode) for n in ('d', 'd/exe', 'd/data')] == [0o755, 0o755, 0o644]
    bad = _tar(str(tmp_path / 'y.tar'), [('a', tarfile.REGTYPE, '', b'x', 0o644), ('a', tarfile.DIRTYPE, '', b'', 0o755)])
    with pytest.raises(_safetar.UnsafeTarError, match="already exists and is not a directory"):
        _safetar.safe_extract(bad, str(tmp_path / 'out2'))


# ---------------------------------------------------------------- the OCI store and the manifest


def test_references_skip_digests_that_are_not_strings(tmp_path):
    store = tmp_path / 'images'
    write(str(store / 'oci-layout'), '{"imageLayoutVersion": "1.0.0"}')
    write(str(store / 'index.json'), json.dumps({'manifests': [
        {'digest': ['sha256:' + 'a' * 64]}, {'digest': {'x': 1}}, 'junk', {'size': 3},
        {'digest': 'sha256:' + 'b' * 64}], 'layers': 'x'}))
    refs = ImageStore(str(store)).references([([1], 'image x')])
    assert refs == [(['sha256:' + 'a' * 64], 'images/index.json'), ({'x': 1}, 'images/index.json'),
                    (None, 'images/index.json'), ('sha256:' + 'b' * 64, 'images/index.json'), ([1], 'image x')]


def test_read_manifest_bounded_and_regular(tmp_path, monkeypatch):
    root = make_bundle(tmp_path / 'b')
    finish(root)
    monkeypatch.setattr(M, 'MANIFEST_LIMIT', 64)
    with pytest.raises(BundleError, match='manifest .*manifest.json is too large: expected at most 64 bytes'):
        M.read_manifest(root)


# ---------------------------------------------------------------- site-local paths and the destination guard


def test_site_local_paths(tmp_path):
    root = str(tmp_path / 'b')
    assert site_local_paths(root) == []
    for rel in ('.ferry-venv/bin/python', 'collections/x', 'inventory/hosts.yml', 'inventory/group_vars/all.yml',
                'inventory/hosts.yml.example', 'apps/.ferry-venv/x'):
        write(os.path.join(root, rel), 'x')
    os.symlink('/etc', os.path.join(root, '.ansible'))
    assert site_local_paths(root) == ['.ansible', '.ferry-venv/', 'collections/', 'inventory/group_vars/',
                                      'inventory/hosts.yml']


def test_place_bundle_rolls_back_the_site_files(tmp_path, monkeypatch):
    dest = str(tmp_path / 'current')
    make_bundle(dest)
    finish(dest)
    write(os.path.join(dest, 'inventory/hosts.yml'), 'all: {}\n')
    write(os.path.join(dest, '.ferry-venv/bin/python'), '#!/bin/sh\n')
    before = tree(dest)
    staged = str(tmp_path / '.current.tmp-x')
    make_bundle(staged, version='2.0')
    new = finish(staged, '2.0')

    def fail(*a):
        raise OSError(errno.EXDEV, 'Invalid cross-device link')
    monkeypatch.setattr(V, 'replace_dir', fail)
    with pytest.raises(OSError):
        V.place_bundle(staged, dest, new)
    assert tree(dest) == before and not os.path.exists(os.path.join(staged, 'inventory/hosts.yml'))
