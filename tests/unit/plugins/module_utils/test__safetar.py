# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_safetar: member checks, corrupt archives, safe extraction."""

import os
import tarfile

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._safetar import (
    CorruptTarError, UnsafeTarError, check_member, iter_members, member_reader, open_tar, safe_extract)

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import tar_bytes, write_tar


def info(name, kind=tarfile.REGTYPE, linkname=''):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    return member


@pytest.mark.parametrize('name, kind, linkname, reason', [
    ('/etc/passwd', tarfile.REGTYPE, '', 'absolute'),
    ('a/../../etc/passwd', tarfile.REGTYPE, '', "'..' component"),
    ('..', tarfile.DIRTYPE, '', "'..' component"),
    ('link', tarfile.SYMTYPE, '/etc/shadow', 'absolute'),
    ('a/b/link', tarfile.SYMTYPE, '../../../x', 'escapes'),
    ('hard', tarfile.LNKTYPE, '/etc/shadow', 'absolute'),
    ('a/hard', tarfile.LNKTYPE, '../x', 'escapes'),
    ('dev', tarfile.CHRTYPE, '', 'device or fifo'),
    ('blk', tarfile.BLKTYPE, '', 'device or fifo'),
    ('pipe', tarfile.FIFOTYPE, '', 'device or fifo'),
])
def test_check_member_rejects(name, kind, linkname, reason):
    with pytest.raises(UnsafeTarError) as err:
        check_member(info(name, kind, linkname), 'images.tar')
    message = str(err.value)
    assert "'%s'" % name in message
    assert "'images.tar'" in message
    assert reason in message
    assert err.value.member == name and err.value.archive == 'images.tar'
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize('name, kind, linkname', [
    ('./app/bin/tool', tarfile.REGTYPE, ''),
    ('app', tarfile.DIRTYPE, ''),
    ('app/bin/link', tarfile.SYMTYPE, '../lib/libx.so'),
    ('app/hard', tarfile.LNKTYPE, 'app/bin/tool'),
    ('dots..in..name', tarfile.REGTYPE, ''),
])
def test_check_member_accepts(name, kind, linkname):
    member = info(name, kind, linkname)
    assert check_member(member, 'ok.tar') is None


@pytest.mark.parametrize('compress', [False, True])
def test_open_tar_detects_gzip_and_iterates(tmp_path, compress):
    path = write_tar(tmp_path / 'a.tar', [('x', b'1'), ('dir/y', b'22')], compress)
    with open_tar(path) as tar:
        names = [m.name for m in iter_members(tar, path)]
        data = member_reader(tar, tar.getmember('dir/y'), path).read()
    assert names == ['x', 'dir/y']
    assert data == b'22'


def test_iter_members_stops_at_unsafe_member(tmp_path):
    path = write_tar(tmp_path / 'bad.tar', [('ok', b'1'), ('../evil', b'2'), ('later', b'3')])
    seen = []
    with open_tar(path) as tar:
        with pytest.raises(UnsafeTarError) as err:
            for member in iter_members(tar, path):
                seen.append(member.name)
    assert seen == ['ok']
    assert "'../evil'" in str(err.value) and path in str(err.value)


@pytest.mark.parametrize('compress, cut', [
    (False, 700),       # inside the data of the first member
    (False, 1536),      # exactly at the end of the last member: end blocks missing
    (True, -30),        # gzip stream cut short
])
def test_truncated_archive_is_a_clear_error(tmp_path, compress, cut):
    data = tar_bytes([('first', b'a' * 1000), ('second', b'b' * 10)], compress)
    if compress:
        data = data[:cut]
    else:
        assert data[cut:cut + 1024] != b'\0' * 1024 or cut == 1536
        data = data[:cut]
    path = tmp_path / 'cut.tar'
    path.write_bytes(data)
    with pytest.raises(CorruptTarError) as err:
        with open_tar(str(path)) as tar:
            for member in iter_members(tar, str(path)):
                member_reader(tar, member, str(path)).read()
    assert str(path) in str(err.value)
    assert 'truncated or corrupt' in str(err.value)
    assert isinstance(err.value, ValueError)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / 'garbage.tar'
    path.write_bytes(b'\x1f\x8bnot really gzip at all' * 10)
    with pytest.raises(CorruptTarError) as err:
        with open_tar(str(path)) as tar:
            list(iter_members(tar, str(path)))
    assert str(path) in str(err.value)


def test_open_tar_missing_file(tmp_path):
    with pytest.raises(ValueError) as err:
        open_tar(str(tmp_path / 'nope.tar'))
    assert 'nope.tar' in str(err.value)


def test_safe_extract_files_dirs_and_links(tmp_path):
    path = write_tar(tmp_path / 'ok.tar.gz', [
        {'name': 'app', 'type': tarfile.DIRTYPE},
        {'name': 'app/tool', 'data': b'#!/bin/sh\n', 'mode': 0o4755},
        {'name': 'app/link', 'type': tarfile.SYMTYPE, 'linkname': 'tool'},
        {'name': 'app/copy', 'type': tarfile.LNKTYPE, 'linkname': 'app/tool'},
        ('deep/er/file', b'x'),
    ], compress=True)
    dest = tmp_path / 'out'
    names = safe_extract(path, str(dest))
    assert names == ['app', 'app/tool', 'app/link', 'app/copy', 'deep/er/file']
    assert (dest / 'app' / 'tool').read_bytes() == b'#!/bin/sh\n'
    assert oct((dest / 'app' / 'tool').stat().st_mode & 0o7777) == oct(0o755)
    assert os.readlink(str(dest / 'app' / 'link')) == 'tool'
    assert (dest / 'app' / 'copy').read_bytes() == b'#!/bin/sh\n'
    assert not (dest / 'app' / 'copy').is_symlink()
    assert (dest / 'deep' / 'er' / 'file').read_bytes() == b'x'


@pytest.mark.parametrize('entries, bad', [
    ([('ok', b'1'), ('../escape', b'2')], '../escape'),
    ([{'name': 'l', 'type': tarfile.SYMTYPE, 'linkname': '/etc'}], 'l'),
])
def test_safe_extract_refuses_before_writing_outside(tmp_path, entries, bad):
    path = write_tar(tmp_path / 'bad.tar', entries)
    dest = tmp_path / 'out' / 'inner'
    with pytest.raises(UnsafeTarError) as err:
        safe_extract(path, str(dest))
    assert err.value.member == bad
    assert not (tmp_path / 'out' / 'escape').exists()
    assert not (dest / 'l').exists()


@pytest.mark.parametrize('links, reason', [
    # each link looks internal on its own, together they point out of dest
    ([('sub/a', '..'), ('sub/a/l', '../..')], 'goes through a symlink'),
    ([('l', 'x/..'), ('x', '.')], 'outside'),
])
def test_safe_extract_catches_symlink_chains(tmp_path, links, reason):
    entries = [{'name': 'sub', 'type': tarfile.DIRTYPE}]
    entries += [{'name': name, 'type': tarfile.SYMTYPE, 'linkname': target} for name, target in links]
    path = write_tar(tmp_path / 'chain.tar', entries)
    dest = tmp_path / 'a' / 'b' / 'out'
    with pytest.raises(UnsafeTarError) as err:
        safe_extract(path, str(dest))
    assert reason in str(err.value)
    assert [p for p in dest.rglob('*') if p.is_symlink()] == []
    assert not (tmp_path / 'a' / 'l').exists()


def test_members_after_a_hardlink_are_still_checked(tmp_path):
    # resolving a hardlink makes tarfile read every header at once
    path = write_tar(tmp_path / 'h.tar', [
        ('file', b'data'), {'name': 'hard', 'type': tarfile.LNKTYPE, 'linkname': 'file'},
        ('later', b'x'), ('../evil', b'y')])
    seen = []
    with open_tar(path) as tar:
        with pytest.raises(UnsafeTarError) as err:
            for member in iter_members(tar, path):
                seen.append(member.name)
                if member.name == 'hard':
                    assert member_reader(tar, member, path).read() == b'data'
    assert seen == ['file', 'hard', 'later']
    assert err.value.member == '../evil'
    with pytest.raises(UnsafeTarError):
        safe_extract(path, str(tmp_path / 'out'))
    assert not (tmp_path / 'out' / 'later').exists()  # all members are checked before writing
    assert not (tmp_path / 'evil').exists()
