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
import stat
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


DEFAULT_READ_LIMIT = 64 * 1024 * 1024
_OPEN_FLAGS = os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_CLOEXEC', 0)
_KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a fifo'), (stat.S_ISCHR, 'a character device'),
          (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket'))


def _kind(mode):
    for test, name in _KINDS:
        if test(mode):
            return name
    return 'not a regular file'


def open_regular(path):
    """A binary file object of the regular file ``path``, opened without following a final symlink.

    Opens with O_NOFOLLOW|O_NONBLOCK (a fifo cannot block, a symlink to /dev/zero is not followed),
    then checks the open file with fstat; anything but a regular file raises :class:`FsError`
    naming the path and what it is. Missing files raise FsError too.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FsError('%s: expected a regular file, actual a symlink' % path)
        raise FsError('cannot read %s: %s' % (path, exc.strerror or exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FsError('%s: expected a regular file, actual %s' % (path, _kind(st.st_mode)))
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


def read_file(path, limit=DEFAULT_READ_LIMIT, what='file'):
    """The bytes of the regular file ``path``, at most ``limit`` of them; :class:`FsError` otherwise.

    Symlinks, fifos, devices and directories are refused (:func:`open_regular`); a file larger than
    ``limit`` bytes is refused naming both sizes, and never read past ``limit + 1`` bytes.
    """
    with open_regular(path) as handle:
        data = handle.read(limit + 1) if limit is not None else handle.read()
    if limit is not None and len(data) > limit:
        raise FsError('%s %s is too large: expected at most %d bytes, actual %d bytes or more' % (
            what, path, limit, len(data)))
    return data


def read_bytes(path, limit=DEFAULT_READ_LIMIT):
    """The regular file's bytes, or None when it cannot be read (missing, not a regular file, over ``limit``)."""
    try:
        return read_file(path, limit)
    except FsError:
        return None


def mount_point(path):
    """The mount point of the filesystem holding ``path`` (or its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def free_bytes(path):
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (or its parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def disk_full(path, needed=None):
    """The :class:`FsError` for a full filesystem while writing ``path``, naming the filesystem (mount point)."""
    mount = mount_point(path)
    free = free_bytes(path)
    need = ' (%d bytes needed)' % needed if needed is not None else ''
    return FsError('no space left on the filesystem mounted at %s while writing %s%s: %d bytes free there; '
                   'free some space or choose a destination on another filesystem' % (mount, path, need, free))


def check_free(path, needed):
    """Raise :func:`disk_full`'s FsError unless the filesystem of ``path`` has ``needed`` bytes free."""
    if free_bytes(path) < needed:
        raise disk_full(path, needed)


def file_mode(source_mode):
    """Ferry's fixed mode of a file: 0755 when any x bit of ``source_mode`` is set, else 0644."""
    return 0o755 if source_mode & 0o111 else 0o644


def _own(fd):
    """Make a file Ferry wrote root-owned when running as root (whatever the directory's setgid says)."""
    if os.geteuid() == 0:
        os.fchown(fd, 0, 0)


def copy_file(src, dst, mode=None):
    """Copy the regular file ``src`` (never through a symlink) to a new file ``dst``.

    ``dst`` gets ``mode`` (default :func:`file_mode` of ``src``) and, as root, owner root. A full
    filesystem raises :func:`disk_full`'s FsError (the partial ``dst`` is removed).
    """
    with open_regular(src) as source:
        if mode is None:
            mode = file_mode(os.fstat(source.fileno()).st_mode)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        try:
            with os.fdopen(fd, 'wb') as out:
                try:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                    out.flush()
                except (IOError, OSError) as exc:
                    if exc.errno == errno.ENOSPC:
                        raise disk_full(dst)
                    raise
                _own(out.fileno())
                os.fchmod(out.fileno(), mode)
        except BaseException:
            remove(dst)
            raise


def _trusted_inode(st, uid):
    """A file we may share by a hard link: owned by us or root, mode exactly 0644 or 0755."""
    return stat.S_ISREG(st.st_mode) and st.st_uid in (0, uid) and stat.S_IMODE(st.st_mode) in (0o644, 0o755)


def _trusted_dir(path, uid):
    """A directory no one else can write: owned by us or root, not group or world writable."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid in (0, uid) and not st.st_mode & 0o022


def link_or_copy(src, dst):
    """Put the regular file ``src`` at ``dst``: a hard link when that is safe, else a copy with Ferry's modes.

    A hard link shares the file with its source, so it is made only when nobody else could change
    it afterwards: ``src`` owned by us or root with mode 0644 or 0755, in a directory only we or
    root can write; the linked file is checked again after linking (it may have been swapped).
    Otherwise (another owner, a writable directory, odd modes, another filesystem) ``src`` is copied
    (:func:`copy_file`: mode 0644/0755, root-owned as root). Symlinks and special files are refused.
    """
    parent = os.path.dirname(dst)
    if parent and not os.path.isdir(parent):
        makedirs(parent)
    uid = os.geteuid()
    try:
        st = os.lstat(src)
    except OSError as exc:
        raise FsError('cannot read %s: %s' % (src, exc.strerror or exc))
    if _trusted_inode(st, uid) and _trusted_dir(os.path.dirname(os.path.abspath(src)), uid):
        try:
            os.link(src, dst)
        except OSError:
            pass
        else:
            linked = os.lstat(dst)
            if linked.st_ino == st.st_ino and linked.st_dev == st.st_dev and _trusted_inode(linked, uid):
                return
            os.unlink(dst)
    copy_file(src, dst)
