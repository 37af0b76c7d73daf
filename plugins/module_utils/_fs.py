# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filesystem primitives: atomic writes, removal, directories, temporary siblings.

A leaf: standard library only, no Ferry imports. Every Ferry file that is written in place
goes through :func:`atomic_write` (a temporary sibling, fsync, rename), so a crash leaves
either the old file or the new one, never half of one.
"""

import errno
import os
import shutil
import tempfile


class FsError(Exception):
    """An operator-facing filesystem problem (e.g. a destination whose directory is missing)."""


def remove(path):
    """Remove a file, link or directory tree; nothing happens when ``path`` does not exist."""
    if not path:
        return
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def makedirs(path, mode=0o755):
    """Create ``path`` and its missing parents with ``mode`` whatever the umask; existing ones are kept."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        makedirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except OSError as exc:
        if exc.errno != errno.EEXIST or not os.path.isdir(path):
            raise
        return
    os.chmod(path, mode)


def tmp_sibling(path, directory=False):
    """A new temporary file (or directory) ``.<name>.tmp-XXXX`` next to ``path``, for a later rename."""
    parent = os.path.dirname(os.path.abspath(path)) or '.'
    prefix = '.%s.tmp-' % os.path.basename(os.path.normpath(path))
    if not os.path.isdir(parent):
        raise FsError('cannot write %s: its directory %s does not exist' % (path, parent))
    if directory:
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=parent)
    os.close(fd)
    return tmp


def atomic_write(path, data, mode=0o644):
    """Write ``data`` (bytes or text) to ``path`` through a temporary sibling, fsync and a rename.

    The file gets ``mode`` (0o600 for anything holding a secret) before it appears under its name.
    """
    if isinstance(data, str):
        data = data.encode('utf-8')
    tmp = tmp_sibling(path)
    try:
        os.chmod(tmp, mode)
        with open(tmp, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def replace_dir(tmp_dir, dest_dir):
    """Move the finished directory ``tmp_dir`` to ``dest_dir``, replacing what is there (rolled back on error)."""
    old = None
    if os.path.lexists(dest_dir):
        old = tmp_sibling(dest_dir, directory=True)
        os.rmdir(old)
        os.rename(dest_dir, old)
    try:
        os.rename(tmp_dir, dest_dir)
    except BaseException:
        if old is not None:
            os.rename(old, dest_dir)
        raise
    if old is not None:
        remove(old)


def link_or_copy(src, dst):
    """Hard-link ``src`` to ``dst`` when on the same filesystem, else copy it (with its mode)."""
    parent = os.path.dirname(dst)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)


def read_bytes(path):
    """The file's bytes, or None when it cannot be read (missing, a directory...)."""
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError):
        return None
