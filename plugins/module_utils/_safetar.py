# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safe reading of tar archives (plain or gzip) with member checks.

Every reader of a tar in this collection goes through this file: members with
absolute names, ``..`` components, links escaping the archive root, devices,
fifos or sparse files are refused with :class:`UnsafeTarError`; truncated or
corrupt archives raise :class:`CorruptTarError` (a ``ValueError``) naming the
file; a compressed file where a plain tar is expected raises
:class:`CompressedTarError`. Files written from a tar get Ferry's fixed modes
(0644, 0755 when any x bit is set) whatever the member says.
"""


import errno
import os
import posixpath
import tarfile
import zlib

GZIP_MAGIC = b'\x1f\x8b'
# What compressed input starts with (tarfile would inflate any of them without limit).
COMPRESSION_MAGIC = ((GZIP_MAGIC, 'gzip'), (b'BZh', 'bzip2'), (b'\xfd7zXZ\x00', 'xz'),
                     (b'\x28\xb5\x2f\xfd', 'zstd'), (b'\x5d\x00\x00', 'lzma'))
_LINK_DEPTH = 16
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


class CompressedTarError(ValueError):
    """Compressed input where only an uncompressed tar is accepted."""

    def __init__(self, archive_name, compression):
        self.archive = archive_name
        self.compression = compression
        super(CompressedTarError, self).__init__(
            "'%s' is %s-compressed: expected an uncompressed tar (refusing to decompress it)" % (
                archive_name or '<tar>', compression))


def compression_of(head):
    """The compression (``gzip``, ``bzip2``, ``xz``, ``zstd``, ``lzma``) whose magic ``head`` starts with, or None."""
    for magic, name in COMPRESSION_MAGIC:
        if head.startswith(magic):
            return name
    return None


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
    if member.issparse():
        fail('sparse members are not allowed (their data would expand on extraction)')
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


def open_tar(path, compressed=True, fileobj=None):
    """Open a plain or gzip tar for random access reading; ValueError on corrupt files.

    With ``compressed=False`` only an uncompressed tar is accepted: gzip, bzip2, xz, zstd or lzma
    input raises :class:`CompressedTarError`. ``fileobj`` (seekable) is read instead of ``path``,
    which then only names the archive in messages.
    """
    try:
        if fileobj is None:
            with open(path, 'rb') as fh:
                head = fh.read(8)
        else:
            fileobj.seek(0)
            head = fileobj.read(8)
            fileobj.seek(0)
        kind = compression_of(head)
        if kind is not None and not (compressed and kind == 'gzip'):
            raise CompressedTarError(path, kind)
        mode = 'r:gz' if kind == 'gzip' else 'r:'
        if fileobj is None:
            return tarfile.open(path, mode)
        return tarfile.open(name=path, mode=mode, fileobj=fileobj)
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


def _link_target(tar, member, archive_name):
    """The member a hardlink or symlink ``member`` points to (a hardlink: an earlier member)."""
    if member.issym():
        wanted = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), member.linkname))
        candidates = tar.members
    else:
        wanted = posixpath.normpath(member.linkname)
        candidates = tar.members[:tar.members.index(member)] if member in tar.members else tar.members
    for other in reversed(candidates):
        if posixpath.normpath(other.name) == wanted:
            return other
    kind = 'symlink' if member.issym() else 'hardlink'
    raise UnsafeTarError(archive_name, member.name, "%s target '%s' is not in the archive" % (kind, member.linkname))


def resolve_member(tar, member, archive_name=''):
    """The regular member whose data ``member`` (regular, or a chain of links) stands for.

    A link to a missing member, a link loop or a link to a directory raises :class:`UnsafeTarError`.
    """
    seen = []
    while member.issym() or member.islnk():
        if len(seen) >= _LINK_DEPTH or any(m is member for m in seen):
            raise UnsafeTarError(archive_name, seen[0].name if seen else member.name, 'link loop')
        seen.append(member)
        member = _link_target(tar, member, archive_name)
    if not member.isreg():
        raise UnsafeTarError(archive_name, (seen[0] if seen else member).name, 'not a regular file')
    return member


def member_reader(tar, member, archive_name=''):
    """Open the data of a regular (or link to regular) member for streaming."""
    archive_name = archive_name or getattr(tar, 'name', '') or ''
    member = resolve_member(tar, member, archive_name)
    try:
        fileobj = tar.extractfile(member)
    except _READ_ERRORS as exc:
        raise CorruptTarError(archive_name, _describe(exc))
    if fileobj is None:
        raise UnsafeTarError(archive_name, member.name, 'not a regular file')
    return _MemberReader(fileobj, archive_name)


def write_member(tar, member, target, archive_name='', progress=None):
    """Write the data of the regular ``member`` to the new file ``target``; returns the bytes written.

    Exactly ``member.size`` bytes are written (a member with less data is a CorruptTarError), never
    through a symlink and never over an existing path. The file gets mode 0755 when any x bit of the
    member's mode is set, else 0644, and owner root when running as root. An OSError (ENOSPC...)
    propagates after the partial file is removed. ``progress(n)`` is called with each chunk's size.
    """
    archive_name = archive_name or getattr(tar, 'name', '') or ''
    real = resolve_member(tar, member, archive_name)
    mode = 0o755 if member.mode & 0o111 else 0o644
    src = member_reader(tar, real, archive_name)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ELOOP, errno.EISDIR):
            raise UnsafeTarError(archive_name, member.name, "'%s' already exists" % target)
        raise
    left = real.size
    try:
        with os.fdopen(fd, 'wb') as out:
            while left:
                chunk = src.read(min(left, 1024 * 1024))
                if not chunk:
                    raise CorruptTarError(archive_name, 'unexpected end of data in member %s' % member.name)
                out.write(chunk)
                left -= len(chunk)
                if progress is not None:
                    progress(len(chunk))
            out.flush()
            if os.geteuid() == 0:
                os.fchown(out.fileno(), 0, 0)
            os.fchmod(out.fileno(), mode)
    except BaseException:
        try:
            os.unlink(target)
        except OSError:
            pass
        raise
    finally:
        src.close()
    return real.size


def safe_extract(path, dest_dir):
    """Extract ``path`` into ``dest_dir``: regular files, dirs and internal symlinks only.

    Every member is checked before anything is written. Hardlinks become copies
    of their (checked) target. Symlinks are created last
    and each one's final resolution must stay inside ``dest_dir``. Returns the
    list of extracted archive-relative names.
    """
    if not os.path.isdir(dest_dir):
        os.makedirs(dest_dir, 0o755)
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
                _mkdirs(root, target, path, member.name)
            else:
                _mkdirs(root, os.path.dirname(target), path, member.name)
                write_member(tar, member, target, path)
            names.append(name)
    _create_symlinks(root, links, path)
    return names


def _mkdirs(root, target, archive_name, name):
    """Create the directory ``target`` (and parents) with mode 0755; a file in the way is an UnsafeTarError."""
    missing = []
    path = target
    while path != root and not os.path.isdir(path):
        if os.path.lexists(path):
            raise UnsafeTarError(archive_name, name, "'%s' already exists and is not a directory" % path)
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        os.mkdir(path, 0o755)
        os.chmod(path, 0o755)


def _create_symlinks(root, links, archive_name):
    created = []
    try:
        for member, target in links:
            parent = os.path.dirname(target)
            _mkdirs(root, parent, archive_name, member.name)
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
