# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packing a bundle into one deterministic tar (or numbered chunks for removable media) and unpacking it."""

import calendar
import errno
import hashlib
import os
import posixpath
import re
import tarfile
import time

from ansible_collections.ferry.airgap.plugins.module_utils import _safetar
from ansible_collections.ferry.airgap.plugins.module_utils._digest import file_mismatch, pretty_json, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._fs import (
    FsError, atomic_write, check_free, disk_full, file_mode, makedirs, open_regular, remove, tmp_sibling)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    FORMAT, KIT_SIG, KIT_SUMS, MANIFEST, RESERVED, SIGNATURE, BundleError, is_str)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import (
    MANIFEST_LIMIT, SIGNATURE_LIMIT, parse_manifest, read_json, read_manifest, walk_files)

CHUNK_RE = re.compile(r'^(?P<base>.+)\.(?P<index>\d{3})$')
# The reserved top-level names (common.RESERVED) a tar may hold besides the listed files, with the
# most bytes each may have.
RESERVED_LIMITS = {MANIFEST: MANIFEST_LIMIT, SIGNATURE: SIGNATURE_LIMIT, KIT_SUMS: MANIFEST_LIMIT, KIT_SIG: SIGNATURE_LIMIT}
# The chunk list (.parts.json) is small: at most 1000 parts.
PARTS_LIMIT = 1024 * 1024
# The most bytes one read of a bundle tar may ask for (member data is read in smaller pieces; the
# manifest, at most MANIFEST_LIMIT, in one).
MAX_TAR_READ = 16 * 1024 * 1024


class _ChunkWriter(object):
    """A write-only file object that splits what it is given into numbered chunk files."""

    def __init__(self, directory, base_name, chunk_size):
        self.directory = directory
        self.base_name = base_name
        self.chunk_size = chunk_size
        self.parts = []
        self.total = hashlib.sha256()
        self.size = 0
        self._f = None
        self._h = None
        self._n = 0

    def _open_next(self):
        self._close_current()
        name = '%s.%03d' % (self.base_name, len(self.parts))
        if len(self.parts) >= 1000:
            raise BundleError('more than 1000 chunks; use a larger chunk_size')
        self._f = open(os.path.join(self.directory, name), 'wb')
        self._h = hashlib.sha256()
        self._n = 0
        self.parts.append({'name': name, 'size': 0, 'sha256': None})

    def _close_current(self):
        if self._f is not None:
            self._f.close()
            self.parts[-1]['size'] = self._n
            self.parts[-1]['sha256'] = self._h.hexdigest()
            self._f = None

    def write(self, data):
        view = memoryview(data)
        self.total.update(view)
        self.size += len(view)
        while len(view):
            if self._f is None or (self.chunk_size and self._n >= self.chunk_size):
                self._open_next()
            room = len(view) if not self.chunk_size else min(len(view), self.chunk_size - self._n)
            self._f.write(view[:room])
            self._h.update(view[:room])
            self._n += room
            view = view[room:]
        return len(data)

    def close(self):
        if self._f is None and not self.parts:
            self._open_next()
        self._close_current()


class _HashSink(object):
    def __init__(self):
        self.total = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.total.update(data)
        self.size += len(data)
        return len(data)


def _created_epoch(manifest):
    try:
        return calendar.timegm(time.strptime(manifest.get('created', ''), '%Y-%m-%dT%H:%M:%SZ'))
    except (ValueError, TypeError, OverflowError):
        return 0


def _write_tar(bundle_dir, fileobj, top, mtime):
    """Stream ``bundle_dir`` as a deterministic tar: manifest first, sorted, root-owned, fixed mtime."""
    rels = [r for r in RESERVED if os.path.isfile(os.path.join(bundle_dir, r))] + walk_files(bundle_dir)
    done = set()
    tar = tarfile.open(fileobj=fileobj, mode='w|', format=tarfile.PAX_FORMAT)
    try:
        def _info(name, kind, size=0, mode=0o644):
            info = tarfile.TarInfo('%s/%s' % (top, name) if name else top)
            info.type = kind
            info.size = size
            info.mode = mode
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ''
            return info
        tar.addfile(_info('', tarfile.DIRTYPE, mode=0o755))
        for rel in rels:
            parts = rel.split('/')[:-1]
            for i in range(1, len(parts) + 1):
                d = '/'.join(parts[:i])
                if d not in done:
                    done.add(d)
                    tar.addfile(_info(d, tarfile.DIRTYPE, mode=0o755))
            try:
                handle = open_regular(os.path.join(bundle_dir, rel))  # no symlink, fifo or device
            except FsError as e:
                raise BundleError(str(e))
            with handle:
                st = os.fstat(handle.fileno())
                tar.addfile(_info(rel, tarfile.REGTYPE, st.st_size, file_mode(st.st_mode)), handle)
    finally:
        tar.close()


def _parts_path(tar_path):
    return tar_path + '.parts.json'


def _existing_pack(tar_path):
    """What a previous pack left at ``tar_path``: ``{'sha256', 'size', 'parts'}`` or None."""
    parts_path = _parts_path(tar_path)
    if os.path.isfile(parts_path):
        try:
            data, _raw = read_json(parts_path, 'chunk list', PARTS_LIMIT)
            return {'sha256': data.get('sha256'), 'size': data.get('size'), 'parts': data.get('parts')}
        except BundleError:
            return None
    if os.path.isfile(tar_path):
        sha, size = sha256_file(tar_path)
        return {'sha256': sha, 'size': size, 'parts': None}
    return None


def pack(bundle_dir, tar_path, chunk_size=None, check_mode=False):
    """Pack ``bundle_dir`` into ``tar_path`` (or ``tar_path.000``, ``.001``... of ``chunk_size`` bytes).

    The tar is deterministic, so packing an unchanged bundle gives the same
    bytes and reports ``changed=False``. Chunks come with ``tar_path.parts.json``
    listing each chunk's size and sha256 (written last). Returns
    ``{'changed', 'tar', 'size', 'sha256', 'parts'}``.
    """
    manifest, _raw = read_manifest(bundle_dir)
    if chunk_size is not None and chunk_size <= 0:
        raise BundleError('chunk_size must be a positive number of bytes, got %r' % chunk_size)
    top = os.path.basename(os.path.normpath(bundle_dir))
    mtime = _created_epoch(manifest)
    before = _existing_pack(tar_path)
    if check_mode:
        sink = _HashSink()
        _write_tar(bundle_dir, sink, top, mtime)
        sha = sink.total.hexdigest()
        changed = before is None or before['sha256'] != sha or bool(before['parts']) != bool(chunk_size)
        return {'changed': changed, 'tar': tar_path, 'size': sink.size, 'sha256': sha, 'parts': None}

    parent = os.path.dirname(os.path.abspath(tar_path))
    base_name = os.path.basename(tar_path)
    tmp = tmp_sibling(tar_path, directory=True)
    try:
        writer = _ChunkWriter(tmp, base_name, chunk_size)
        try:
            _write_tar(bundle_dir, writer, top, mtime)
        finally:
            writer.close()
        sha = writer.total.hexdigest()
        parts = writer.parts if chunk_size else None
        result = {'tar': tar_path, 'size': writer.size, 'sha256': sha, 'parts': parts}
        if before is not None and before['sha256'] == sha and bool(before['parts']) == bool(chunk_size) \
                and (not chunk_size or before['parts'] == parts) \
                and all(os.path.isfile(os.path.join(parent, p['name'])) for p in (parts or [])):
            result['changed'] = False
            return result
        if chunk_size:
            for part in parts:
                os.rename(os.path.join(tmp, part['name']), os.path.join(parent, part['name']))
            index = len(parts)
            while os.path.isfile('%s.%03d' % (tar_path, index)):  # chunks left by an earlier, larger pack
                os.unlink('%s.%03d' % (tar_path, index))
                index += 1
            if os.path.isfile(tar_path):
                os.unlink(tar_path)
            atomic_write(_parts_path(tar_path), pretty_json({
                'format': FORMAT, 'name': base_name, 'size': writer.size, 'sha256': sha,
                'chunk_size': chunk_size, 'parts': parts}))
        else:
            if os.path.isfile(_parts_path(tar_path)):
                os.unlink(_parts_path(tar_path))
            os.rename(os.path.join(tmp, '%s.000' % base_name), tar_path)
            index = 0
            while os.path.isfile('%s.%03d' % (tar_path, index)):
                os.unlink('%s.%03d' % (tar_path, index))
                index += 1
        result['changed'] = True
        return result
    finally:
        remove(tmp)


def resolve_pack(path):
    """Map a tar, its first chunk or its parts.json to ``(tar_path, parts_or_None)``."""
    if path.endswith('.parts.json'):
        tar_path = path[:-len('.parts.json')]
    else:
        m = CHUNK_RE.match(path)
        tar_path = m.group('base') if m and os.path.isfile(_parts_path(m.group('base'))) else path
    parts_path = _parts_path(tar_path)
    if os.path.isfile(parts_path):
        data, _raw = read_json(parts_path, 'chunk list', PARTS_LIMIT)
        parts = data.get('parts') if isinstance(data, dict) else None
        if not isinstance(parts, list) or not parts:
            raise BundleError('chunk list %s: parts: expected a non-empty list' % parts_path)
        for i, part in enumerate(parts):
            if (not isinstance(part, dict) or part.get('name') != '%s.%03d' % (os.path.basename(tar_path), i)
                    or not isinstance(part.get('size'), int) or not is_str(part.get('sha256'))):
                raise BundleError('chunk list %s: parts[%d]: expected {name: %s.%03d, size, sha256}, actual %r' % (
                    parts_path, i, os.path.basename(tar_path), i, part))
        return tar_path, parts
    m = CHUNK_RE.match(path)
    if m:
        raise BundleError('%s looks like a chunk but %s is missing' % (path, _parts_path(m.group('base'))))
    if not os.path.isfile(path):
        raise BundleError('%s does not exist' % path)
    return tar_path, None


def check_chunks(tar_path, parts, progress=None):
    """Return problems with the chunks of ``tar_path`` (missing, size, sha256 naming expected/actual)."""
    problems = []
    parent = os.path.dirname(os.path.abspath(tar_path))
    for part in parts:
        full = os.path.join(parent, part['name'])
        if not os.path.isfile(full):
            problems.append('missing chunk: %s' % full)
            continue
        mismatch = file_mismatch(full, part['size'], part['sha256'], progress)
        if mismatch and mismatch[0] == 'size':
            problems.append('chunk %s: size expected %d bytes, actual %d bytes' % (full, part['size'], mismatch[1]))
        elif mismatch:
            problems.append('chunk %s: sha256 expected %s, actual %s' % (full, part['sha256'], mismatch[1]))
    return problems


class _TarSource(object):
    """A tar, or its checked chunks, read as one seekable file (no joined copy on disk).

    No single read may ask for more than :data:`MAX_TAR_READ` bytes: Ferry reads member data in
    pieces of at most that, so only a tar header (a pax or GNU long-name record, which ``tarfile``
    reads whole into memory) could, and a header that large is refused before it is read.
    """

    def __init__(self, paths):
        self.name = paths[0]
        self._spans = []
        offset = 0
        for path in paths:
            with open_regular(path) as handle:  # FsError for a symlink, a fifo, a device
                size = os.fstat(handle.fileno()).st_size
            self._spans.append((offset, size, path))
            offset += size
        self._size = offset
        self._pos = 0
        self._open = None  # (index, file object)

    def seek(self, pos, whence=0):
        self._pos = {0: pos, 1: self._pos + pos, 2: self._size + pos}[whence]
        return self._pos

    def tell(self):
        return self._pos

    def _file(self, index):
        if self._open is None or self._open[0] != index:
            self.close()
            self._open = (index, open_regular(self._spans[index][2]))
        return self._open[1]

    def read(self, size=-1):
        if size is None or size < 0:
            size = self._size - self._pos
        if size > MAX_TAR_READ:
            raise IOError(errno.EFBIG, 'a tar header record of %d bytes at offset %d: expected at most %d bytes' % (
                size, self._pos, MAX_TAR_READ))
        out = []
        while size > 0 and self._pos < self._size:
            index = max(i for i, span in enumerate(self._spans) if span[0] <= self._pos)
            start, length, dummy = self._spans[index]
            handle = self._file(index)
            handle.seek(self._pos - start)
            data = handle.read(min(size, start + length - self._pos))
            if not data:
                break
            out.append(data)
            self._pos += len(data)
            size -= len(data)
        return b''.join(out)

    def close(self):
        if self._open is not None:
            self._open[1].close()
            self._open = None


def _open_source(tar_path, parts):
    """The tar (or its chunks joined on the fly) as a seekable binary file object."""
    try:
        if parts is None:
            return _TarSource([tar_path])
        parent = os.path.dirname(os.path.abspath(tar_path))
        return _TarSource([os.path.join(parent, part['name']) for part in parts])
    except FsError as e:
        raise BundleError('cannot read %s: %s' % (tar_path, e))


def _bundle_prefix(members, source):
    """``''`` or ``'<top>/'``: where the tar holds its manifest.json (at its root or in one top directory)."""
    found = sorted(set(_safetar.member_name(m) for m in members
                       if posixpath.basename(_safetar.member_name(m)) == MANIFEST
                       and _safetar.member_name(m).count('/') <= 1))
    tops = sorted(set(_safetar.member_name(m).split('/')[0] for m in members if _safetar.member_name(m)))
    if MANIFEST in found:
        return ''
    if len(found) == 1 and len(tops) == 1:
        return found[0][:-len(MANIFEST)]
    raise BundleError('%s does not hold a bundle: expected %s at its root or in a single top directory, found %s' % (
        source, MANIFEST, tops[:10]))


def _read_member(tar, member, limit, source):
    """The bytes of a small regular member (manifest, signature, checksums), at most ``limit``."""
    if not member.isreg():
        raise BundleError('%s: %s is not a regular file in the tar (type %r)' % (source, member.name, member.type))
    if member.size > limit:
        raise BundleError('%s: %s is too large: expected at most %d bytes, actual %d bytes' % (
            source, member.name, limit, member.size))
    reader = _safetar.member_reader(tar, member, source)
    try:
        data = reader.read(member.size)
    finally:
        reader.close()
    if len(data) != member.size:
        raise BundleError('cannot unpack %s: %s is truncated' % (source, member.name))
    return data


def _plan(members, prefix, manifest, source, problems):
    """``[(rel, member)]`` to extract: listed regular members of the listed size, each once.

    Everything else is reported in ``problems`` and never extracted: unlisted members (also those
    outside the top directory), links, members of the wrong size, second copies of a member.
    Directories are not extracted (the parents of listed files are created with mode 0755).
    """
    files = manifest['files']
    plan = []
    taken = set()
    for member in members:
        name = _safetar.member_name(member)
        rel = name[len(prefix):] if name.startswith(prefix) else None
        if member.isdir() or not name or rel == '':
            continue
        if rel in RESERVED_LIMITS:
            if rel in (MANIFEST, SIGNATURE):
                continue  # read first, already in place
            if rel in taken:
                problems.append('%s: more than one %s member in the tar' % (source, rel))
            elif not member.isreg() or member.size > RESERVED_LIMITS[rel]:
                problems.append('%s: %s: expected a regular file of at most %d bytes, actual %s of %d bytes' % (
                    source, rel, RESERVED_LIMITS[rel], 'a regular file' if member.isreg() else 'a link',
                    member.size))
            else:
                taken.add(rel)
                plan.append((rel, member))
            continue
        if rel is None or rel not in files:
            problems.append('unlisted file: %s (not in the manifest)' % (rel or name))
        elif not member.isreg():
            problems.append('%s: a %s in the tar, a bundle holds only regular files (not extracted)' % (
                rel, 'symlink' if member.issym() else 'hardlink'))
        elif rel in taken:
            problems.append('%s: more than one member of this name in the tar (the later one is not extracted)' % rel)
        elif member.size != files[rel]['size']:
            problems.append('size mismatch: %s: expected %d bytes, actual %d bytes in the tar (not extracted)' % (
                rel, files[rel]['size'], member.size))
        else:
            taken.add(rel)
            plan.append((rel, member))
    return plan


def _write_small(path, data):
    """A new file of a few bytes (manifest, signature) in the staging directory: mode 0644, root-owned as root."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o644)
    with os.fdopen(fd, 'wb') as out:
        out.write(data)
        if os.geteuid() == 0:
            os.fchown(out.fileno(), 0, 0)
        os.fchmod(out.fileno(), 0o644)


def unpack(tar_or_first_chunk, dest_dir, progress=None, before_extract=None, problems=None):
    """Unpack a bundle tar (or its chunks) into the new directory ``dest_dir``, the manifest first.

    Chunks are checked against ``.parts.json`` first, then read as one stream (no joined copy).
    Only an uncompressed tar is accepted. Every member header is checked (``_safetar``: no absolute
    or ``..`` paths, escaping links, devices, fifos or sparse members; truncation detected) before
    anything is written. Then ``manifest.json`` and its signature (at the root or in the single top
    directory, at most :data:`MANIFEST_LIMIT` / :data:`SIGNATURE_LIMIT` bytes) are read and placed
    in a temporary sibling of ``dest_dir``, and ``before_extract(tmp_dir, manifest, raw)`` is called:
    it checks the signature and raises to stop. Only then are the members the manifest lists
    extracted (plus the reserved top-level files of ``common.RESERVED``), each only when its size is
    the listed one, so no more bytes are written than the manifest lists; the free space for them is
    checked first. Files get mode 0644 (0755 when the member had an x bit), directories 0755, owner
    root when running as root. Unlisted members, links, wrong sizes and duplicates are not extracted
    but reported: appended to ``problems`` when a list is given, else a :class:`BundleError`.
    A full filesystem is a BundleError naming it. On any error nothing is left behind.

    ``dest_dir`` must not exist (or be an empty directory). Returns ``(manifest, raw)``.
    """
    tar_path, parts = resolve_pack(tar_or_first_chunk)
    if parts is not None:
        found = check_chunks(tar_path, parts, progress)
        if found:
            raise BundleError('chunked tar %s is damaged: %s' % (tar_path, '; '.join(found)))
    if os.path.lexists(dest_dir) and not (os.path.isdir(dest_dir) and not os.path.islink(dest_dir)
                                          and not os.listdir(dest_dir)):
        raise BundleError('cannot unpack %s into %s: it exists and is not an empty directory' % (
            tar_or_first_chunk, dest_dir))
    reported = []
    source = _open_source(tar_path, parts)
    tmp = None
    try:
        try:
            with _safetar.open_tar(tar_or_first_chunk, compressed=False, fileobj=source) as tar:
                members = list(_safetar.iter_members(tar, tar_or_first_chunk))
                prefix = _bundle_prefix(members, tar_or_first_chunk)
                heads = dict((name, [m for m in members if _safetar.member_name(m) == prefix + name])
                             for name in (MANIFEST, SIGNATURE))
                if len(heads[MANIFEST]) != 1 or len(heads[SIGNATURE]) > 1:
                    raise BundleError('%s holds %d %s and %d %s members: expected one of each (at most)' % (
                        tar_or_first_chunk, len(heads[MANIFEST]), MANIFEST, len(heads[SIGNATURE]), SIGNATURE))
                raw = _read_member(tar, heads[MANIFEST][0], MANIFEST_LIMIT, tar_or_first_chunk)
                manifest = parse_manifest(raw, '%s: %s%s' % (tar_or_first_chunk, prefix, MANIFEST))
                sig = _read_member(tar, heads[SIGNATURE][0], SIGNATURE_LIMIT, tar_or_first_chunk) \
                    if heads[SIGNATURE] else None
                plan = _plan(members, prefix, manifest, tar_or_first_chunk, reported)

                tmp = tmp_sibling(dest_dir, directory=True)
                os.chmod(tmp, 0o755)
                _write_small(os.path.join(tmp, MANIFEST), raw)
                if sig is not None:
                    _write_small(os.path.join(tmp, SIGNATURE), sig)
                if before_extract is not None:
                    before_extract(tmp, manifest, raw)
                check_free(tmp, sum(m.size for dummy, m in plan))
                for rel, member in plan:
                    target = os.path.join(tmp, *rel.split('/'))
                    makedirs(os.path.dirname(target))
                    _safetar.write_member(tar, member, target, tar_or_first_chunk, progress)
        except ValueError as e:  # UnsafeTarError, CorruptTarError, CompressedTarError
            raise BundleError('cannot unpack %s: %s' % (tar_or_first_chunk, e))
        except (IOError, OSError) as e:
            if e.errno == errno.ENOSPC:
                raise BundleError('cannot unpack %s: %s' % (tar_or_first_chunk, disk_full(tmp or dest_dir)))
            raise BundleError('cannot unpack %s into %s: %s' % (tar_or_first_chunk, dest_dir, e))
        except FsError as e:
            raise BundleError('cannot unpack %s: %s' % (tar_or_first_chunk, e))
        if reported and problems is None:
            raise BundleError('%s holds members the manifest does not list as they are: %s' % (
                tar_or_first_chunk, '; '.join(reported)))
        if problems is not None:
            problems.extend(reported)
        if os.path.isdir(dest_dir) and not os.path.islink(dest_dir):
            os.rmdir(dest_dir)
        os.rename(tmp, dest_dir)
        tmp = None
    finally:
        source.close()
        remove(tmp)
    return manifest, raw


def describe_source(path):
    """Classify a verify source: ``'dir'``, ``'tar'`` (a tar, a chunk or a parts.json) or raise."""
    if os.path.isdir(path):
        return 'dir'
    for candidate in (path, _parts_path(path)):
        if os.path.lexists(candidate) and (os.path.islink(candidate) or not os.path.isfile(candidate)):
            what = 'a symlink (give the file it points to)' if os.path.islink(candidate) else 'a special file'
            raise BundleError('%s: expected a regular file (a tar, a chunk or a .parts.json) or a bundle directory, '
                              'actual %s' % (candidate, what))
    if os.path.isfile(path) or os.path.isfile(_parts_path(path)):
        return 'tar'
    raise BundleError('%s does not exist' % path)
