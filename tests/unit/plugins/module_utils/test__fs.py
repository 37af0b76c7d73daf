# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_fs: atomic writes, removal, directories."""

import os
import stat

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils import _fs


def test_atomic_write_sets_mode_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'secret.json'
    _fs.atomic_write(str(target), 'text', mode=0o600)
    assert target.read_bytes() == b'text'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    _fs.atomic_write(str(target), b'new')
    assert target.read_bytes() == b'new' and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(str(tmp_path))) == ['secret.json']


def test_atomic_write_into_a_missing_directory_names_it(tmp_path):
    with pytest.raises(_fs.FsError, match='its directory .*missing does not exist'):
        _fs.atomic_write(str(tmp_path / 'missing' / 'f'), b'x')
    assert os.listdir(str(tmp_path)) == []


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'f'
    target.write_bytes(b'old')

    def broken(*args):
        raise OSError('disk gone')
    monkeypatch.setattr(os, 'rename', broken)
    with pytest.raises(OSError, match='disk gone'):
        _fs.atomic_write(str(target), b'new')
    monkeypatch.undo()
    assert target.read_bytes() == b'old' and os.listdir(str(tmp_path)) == ['f']


def test_remove_files_links_trees_and_missing(tmp_path):
    (tmp_path / 'd' / 'e').mkdir(parents=True)
    (tmp_path / 'd' / 'e' / 'f').write_bytes(b'x')
    (tmp_path / 'keep').write_bytes(b'k')
    os.symlink(str(tmp_path / 'keep'), str(tmp_path / 'link'))
    _fs.remove(str(tmp_path / 'link'))
    _fs.remove(str(tmp_path / 'd'))
    _fs.remove(str(tmp_path / 'never-there'))
    assert os.listdir(str(tmp_path)) == ['keep']


def test_makedirs_applies_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        _fs.makedirs(str(tmp_path / 'a' / 'b'), 0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / 'a' / 'b').stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / 'a').stat().st_mode) == 0o755


def test_replace_dir_swaps_and_removes_the_old(tmp_path):
    dest, new = tmp_path / 'dest', tmp_path / 'new'
    dest.mkdir()
    (dest / 'old').write_bytes(b'1')
    new.mkdir()
    (new / 'fresh').write_bytes(b'2')
    _fs.replace_dir(str(new), str(dest))
    assert os.listdir(str(dest)) == ['fresh'] and sorted(os.listdir(str(tmp_path))) == ['dest']


def test_read_bytes(tmp_path):
    (tmp_path / 'f').write_bytes(b'abc')
    assert _fs.read_bytes(str(tmp_path / 'f')) == b'abc'
    assert _fs.read_bytes(str(tmp_path)) is None
    assert _fs.read_bytes(str(tmp_path / 'missing')) is None
