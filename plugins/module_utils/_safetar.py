# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safe reading of tar archives (plain or gzip) with member checks.

Every reader of a tar in this collection goes through this file: members with
absolute names, ``..`` components, links escaping the archive root, devices or
fifos are refused with :class:`UnsafeTarError`; truncated or corrupt archives
raise :class:`CorruptTarError` (a ``ValueError``) naming the file.
"""


import os
import posixpath
import shutil
import tarfile
import zlib

GZIP_MAGIC = b'\x1f\x8b'
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


class UnsafeTarError(ValueError):
    """A tar member that must not be read or extracted."""

    def __init__(self, archive_name, member_name, reason):
        self.archive = archive_name
        self.member = member_name
        self.reason = reason
        super(UnsafeTarError, self).__init__(
            "unsafe member '%s' in archive '%s': %s" % (member_name, archive_name or '<tar>', reason))


class CorruptTarError(ValueError):
    """A truncated or corrupt archive."""

    def __init__(self, archive_name, detail):
        self.archive = archive_name
        super(CorruptTarError, self).__init__(
            "cannot read tar archive '%s' (truncated or corrupt): %s" % (archive_name or '<tar>', detail))


def _escapes(path):
    """True when the normalised relative ``path`` leaves the archive root."""
    norm = posixpath.normpath(path)
    return norm == '..' or norm.startswith('../')


def check_member(member, archive_name=''):
    """Raise UnsafeTarError unless ``member`` (a TarInfo) is safe to read or extract."""
    name = member.name

    def fail(reason):
        raise UnsafeTarError(archive_name, name, reason)

    if not name or name.startswith('/') or name.startswith('\\'):
        fail('absolute or empty path')
    if '..' in name.replace('\\', '/').split('/'):
        fail("path has a '..' component")
    if member.isdev() or member.isfifo():
        fail('device or fifo members are not allowed')
    if member.issym() or member.islnk():
        target = member.linkname
        kind = 'symlink' if member.issym() else 'hardlink'
        if not target or target.startswith('/'):
            fail("%s target '%s' is absolute or empty" % (kind, target))
        base = posixpath.dirname(name) if member.issym() else ''
        if _escapes(posixpath.join(base, target)):
            fail("%s target '%s' escapes the archive root" % (kind, target))
    elif not (member.isreg() or member.isdir()):
        fail('unsupported member type %r' % member.type)


def open_tar(path):
    """Open a plain or gzip tar for random access reading; ValueError on corrupt files."""
    try:
        with open(path, 'rb') as fh:
            magic = fh.read(2)
        mode = 'r:gz' if magic == GZIP_MAGIC else 'r:'
        return tarfile.open(path, mode)
    except _READ_ERRORS as exc:
        raise CorruptTarError(path, _describe(exc))


def _describe(exc):
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, EOFError):
        return 'unexpected end of data (%s)' % text
    return text


def _check_end_marker(tar, archive_name):
    """Complain when the archive stops at a member boundary without its end blocks."""
    tar.fileobj.seek(tar.offset)
    end = tar.fileobj.read(tarfile.BLOCKSIZE)
    if len(end) != tarfile.BLOCKSIZE or end.count(b'\0') != tarfile.BLOCKSIZE:
        raise CorruptTarError(archive_name, 'unexpected end of data: missing end-of-archive block')


def iter_members(tar, archive_name=''):
    """Yield every member of ``tar`` after check_member(); detect truncation."""
    archive_name = archive_name or getattr(tar, 'name', '') or ''
    index = 0
    while True:
        # tarfile may load every header on its own (resolving a link target):
        # walk tar.members by index so that no member escapes the checks.
        # (next() hands back the already listed first member once: loop.)
        while index == len(tar.members):
            try:
                if tar.next() is None:
                    _check_end_marker(tar, archive_name)
                    return
            except _READ_ERRORS as exc:
                raise CorruptTarError(archive_name, _describe(exc))
        member = tar.members[index]
        index += 1
        check_member(member, archive_name)
        yield member


def member_name(member):
    """The member's name without a leading './' (archive-relative path)."""
    name = posixpath.normpath(member.name)
    return '' if name == '.' else name


def _inside(root, path):
    return path == root or path.startswith(root + os.sep)


def _ensure_inside(root, path, archive_name, name):
    real = os.path.realpath(path)
    if not _inside(root, real):
        raise UnsafeTarError(archive_name, name, "resolves to '%s' outside '%s'" % (real, root))
    return real


class _MemberReader(object):
    """File-like reader of one member's data; read errors become CorruptTarError."""

    def __init__(self, fileobj, archive_name):
        self._fileobj = fileobj
        self._archive = archive_name

    def read(self, size=-1):
        try:
            return self._fileobj.read(size)
        except _READ_ERRORS as exc:
            raise CorruptTarError(self._archive, _describe(exc))

    def close(self):
        self._fileobj.close()


def member_reader(tar, member, archive_name=''):
    """Open the data of a regular (or link to regular) member for streaming."""
    archive_name = archive_name or getattr(tar, 'name', '') or ''
    try:
        fileobj = tar.extractfile(member)
    except _READ_ERRORS as exc:
        raise CorruptTarError(archive_name, _describe(exc))
    if fileobj is None:
        raise UnsafeTarError(archive_name, member.name, 'not a regular file')
    return _MemberReader(fileobj, archive_name)


def _extract_file(tar, member, target, archive_name):
    if os.path.islink(target) or (os.path.lexists(target) and not os.path.isfile(target)):
        raise UnsafeTarError(archive_name, member.name, "'%s' already exists and is not a regular file" % target)
    src = member_reader(tar, member, archive_name)
    with open(target, 'wb') as out:
        shutil.copyfileobj(src, out, 1024 * 1024)
    os.chmod(target, member.mode & 0o777)


def safe_extract(path, dest_dir):
    """Extract ``path`` into ``dest_dir``: regular files, dirs and internal symlinks only.

    Every member is checked before anything is written. Hardlinks become copies
    of their (checked) target. Symlinks are created last
    and each one's final resolution must stay inside ``dest_dir``. Returns the
    list of extracted archive-relative names.
    """
    if not os.path.isdir(dest_dir):
        os.makedirs(dest_dir)
    root = os.path.realpath(dest_dir)
    links = []
    names = []
    with open_tar(path) as tar:
        for member in list(iter_members(tar, path)):
            name = member_name(member)
            if not name:
                continue
            target = os.path.join(root, *name.split('/'))
            _ensure_inside(root, os.path.dirname(target), path, member.name)
            if member.issym():
                links.append((member, target))
            elif member.isdir():
                if not os.path.isdir(target):
                    os.makedirs(target)
            else:
                parent = os.path.dirname(target)
                if not os.path.isdir(parent):
                    os.makedirs(parent)
                _extract_file(tar, member, target, path)
            names.append(name)
    _create_symlinks(root, links, path)
    return names


def _create_symlinks(root, links, archive_name):
    created = []
    try:
        for member, target in links:
            parent = os.path.dirname(target)
            if not os.path.isdir(parent):
                os.makedirs(parent)
            if os.path.realpath(parent) != parent:
                raise UnsafeTarError(archive_name, member.name, "parent directory '%s' goes through a symlink" % parent)
            if os.path.lexists(target):
                raise UnsafeTarError(archive_name, member.name, "'%s' already exists" % target)
            os.symlink(member.linkname, target)
            created.append((member, target))
        for member, target in created:
            _ensure_inside(root, target, archive_name, member.name)
    except Exception:
        for dummy, target in reversed(created):
            if os.path.islink(target):
                os.unlink(target)
        raise
