# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packing a bundle into one deterministic tar (or numbered chunks for removable media) and unpacking it."""

import calendar
import hashlib
import os
import re
import shutil
import tarfile
import time

from ansible_collections.ferry.airgap.plugins.module_utils import _safetar
from ansible_collections.ferry.airgap.plugins.module_utils._digest import BUF_SIZE, file_mismatch, pretty_json, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._fs import atomic_write, remove, replace_dir, tmp_sibling
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import FORMAT, MANIFEST, RESERVED, BundleError, is_str, load_json
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import read_manifest, walk_files

CHUNK_RE = re.compile(r'^(?P<base>.+)\.(?P<index>\d{3})$')


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
            full = os.path.join(bundle_dir, rel)
            st = os.stat(full)
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            with open(full, 'rb') as f:
                tar.addfile(_info(rel, tarfile.REGTYPE, st.st_size, mode), f)
    finally:
        tar.close()


def _parts_path(tar_path):
    return tar_path + '.parts.json'


def _existing_pack(tar_path):
    """What a previous pack left at ``tar_path``: ``{'sha256', 'size', 'parts'}`` or None."""
    parts_path = _parts_path(tar_path)
    if os.path.isfile(parts_path):
        try:
            data, _raw = load_json(parts_path, 'chunk list')
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
        data, _raw = load_json(parts_path, 'chunk list')
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


def unpack(tar_or_first_chunk, dest_dir, progress=None):
    """Unpack a bundle tar (or its chunks) into ``dest_dir`` through ``_safetar``.

    Chunks are checked against ``.parts.json`` first. The tar is extracted into
    a temporary sibling of ``dest_dir``; the single top directory holding
    ``manifest.json`` (or the root itself) is renamed to ``dest_dir``. Returns
    ``dest_dir``. Unsafe members and truncated/corrupt tars raise
    :class:`BundleError` naming the tar and the member.
    """

    tar_path, parts = resolve_pack(tar_or_first_chunk)
    if parts is not None:
        problems = check_chunks(tar_path, parts, progress)
        if problems:
            raise BundleError('chunked tar %s is damaged: %s' % (tar_path, '; '.join(problems)))
    tmp = tmp_sibling(dest_dir, directory=True)
    try:
        source = tar_path
        if parts is not None:
            # _safetar reads a path: join the checked chunks in the temporary directory
            source = os.path.join(tmp, '.joined.tar')
            parent = os.path.dirname(os.path.abspath(tar_path))
            with open(source, 'wb') as out:
                for part in parts:
                    with open(os.path.join(parent, part['name']), 'rb') as f:
                        shutil.copyfileobj(f, out, BUF_SIZE)
        extract_dir = os.path.join(tmp, 'x')
        os.mkdir(extract_dir)
        try:
            _safetar.safe_extract(source, extract_dir)
        except ValueError as e:  # UnsafeTarError is a ValueError too
            raise BundleError('cannot unpack %s: %s' % (tar_or_first_chunk, e))
        if parts is not None:
            os.unlink(source)
        if os.path.isfile(os.path.join(extract_dir, MANIFEST)):
            root = extract_dir
        else:
            entries = os.listdir(extract_dir)
            if len(entries) != 1 or not os.path.isfile(os.path.join(extract_dir, entries[0], MANIFEST)):
                raise BundleError('%s does not hold a bundle: expected %s at its root or in a single top '
                                  'directory, found %s' % (tar_or_first_chunk, MANIFEST, sorted(entries)[:10]))
            root = os.path.join(extract_dir, entries[0])
        os.chmod(root, 0o755)
        replace_dir(root, dest_dir)
    finally:
        remove(tmp)
    return dest_dir


def describe_source(path):
    """Classify a verify source: ``'dir'``, ``'tar'`` (a tar, a chunk or a parts.json) or raise."""
    if os.path.isdir(path):
        return 'dir'
    if os.path.isfile(path) or os.path.isfile(_parts_path(path)):
        return 'tar'
    raise BundleError('%s does not exist' % path)
