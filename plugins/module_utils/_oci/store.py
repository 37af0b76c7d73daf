# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The OCI image layout store shared by every image of a bundle.

The store is one OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/<hex>``): each blob is kept once across images, versions and
architectures. The top-level ``index.json`` holds one descriptor per image ref,
annotated with the full ref the site uses. This is the one reader and writer of
that layout: the bundle manifest, verification, distribution and loading all
read images through it.
"""

import hashlib
import io
import os
import tempfile

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, canonical_json, chunks, pretty_json, sha256_digest, sha256_stream
from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError, read_file, remove
from ansible_collections.ferry.airgap.plugins.module_utils._platform import platform_key
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (
    CONTAINERD_ANNOTATION, INDEX_TYPES, MANIFEST_TYPES, MAX_DOCUMENT, MT_OCI_INDEX, REF_ANNOTATION, OciError,
    check_digest, config_platform, descriptor, hex_of, loads)


class ImageStore(object):
    """An OCI image layout directory holding every image of a bundle.

    With ``dry_run`` nothing is written: blob writes are counted, documents are
    kept in memory and index.json changes stay in memory (for check mode).
    """

    def __init__(self, path, dry_run=False):
        self.path = path
        self.dry_run = dry_run
        self.blob_dir = os.path.join(path, 'blobs', 'sha256')
        self.bytes_written = 0
        self.bytes_skipped = 0
        self._pending = {}      # dry run: documents that would be written
        self._planned = set()   # dry run: digests of blobs that would be written
        self._index = None

    # -- layout
    def exists(self):
        return os.path.isfile(os.path.join(self.path, 'oci-layout'))

    def init(self):
        """Create the layout (no-op when present or in dry run)."""
        if self.dry_run:
            return
        if not os.path.isdir(self.blob_dir):
            os.makedirs(self.blob_dir)
        if not self.exists():
            self._write_file('oci-layout', canonical_json({'imageLayoutVersion': '1.0.0'}))
        if not os.path.isfile(os.path.join(self.path, 'index.json')):
            self._save_index()

    def _write_file(self, name, data):
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=self.path)
        try:
            with os.fdopen(fd, 'wb') as out:
                out.write(data)
            os.chmod(tmp, 0o644)
            os.rename(tmp, os.path.join(self.path, name))
        except Exception:
            remove(tmp)
            raise

    # -- blobs
    def blob_path(self, digest):
        return os.path.join(self.blob_dir, hex_of(digest))

    def has_blob(self, digest, size=None):
        if digest in self._pending or digest in self._planned:
            return True
        path = self.blob_path(digest)
        return os.path.isfile(path) and (size is None or os.path.getsize(path) == size)

    def put_blob(self, opener, digest=None, size=None, what='blob'):
        """Store the stream returned by ``opener()``; returns (digest, size).

        Streams into a temp file in the store while hashing, checks the expected
        digest and size, then renames into place. A blob already present (same
        digest and size) is skipped without calling ``opener``.
        """
        if digest is not None and self.has_blob(digest, size):
            skipped = size if size is not None else os.path.getsize(self.blob_path(digest))
            self.bytes_skipped += skipped
            return digest, skipped
        if self.dry_run and digest is not None and size is not None:
            self._planned.add(digest)
            self.bytes_written += size
            return digest, size
        src = opener()
        try:
            actual, count, tmp = self._stream(src)
        finally:
            src.close()
        try:
            self._check_stream(actual, count, digest, size, what)
            if self.has_blob(actual, count):
                self.bytes_skipped += count
            elif tmp:
                os.rename(tmp, self.blob_path(actual))
                tmp = None
                self.bytes_written += count
            else:
                self._planned.add(actual)
                self.bytes_written += count
        finally:
            remove(tmp)
        return actual, count

    def _stream(self, src):
        """Hash ``src`` (and write it to a temp file unless dry run)."""
        hasher = hashlib.sha256()
        count = 0
        if self.dry_run:
            for chunk in chunks(src):
                hasher.update(chunk)
                count += len(chunk)
            return 'sha256:' + hasher.hexdigest(), count, None
        self.init()
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=self.blob_dir)
        try:
            with os.fdopen(fd, 'wb') as out:
                for chunk in chunks(src):
                    hasher.update(chunk)
                    count += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
        except BaseException:
            remove(tmp)
            raise
        return 'sha256:' + hasher.hexdigest(), count, tmp

    @staticmethod
    def _check_stream(actual, count, digest, size, what):
        if digest is not None and actual != digest:
            raise OciError('digest mismatch for %s: expected %s, got %s (%d bytes)' % (what, digest, actual, count))
        if size is not None and count != size:
            raise OciError('size mismatch for %s (%s): expected %d bytes, got %d' % (what, actual, size, count))

    def put_bytes(self, data, digest=None, what='document'):
        """Store a small document; returns (digest, size)."""
        if digest is not None:
            check_digest(data, digest, what)
        else:
            digest = sha256_digest(data)
        if self.dry_run and not self.has_blob(digest, len(data)):
            self._pending[digest] = data
            self.bytes_written += len(data)
            return digest, len(data)
        return self.put_blob(lambda: io.BytesIO(data), digest, len(data), what)

    def read_blob(self, digest, limit=MAX_DOCUMENT):
        """Bytes of a (small) blob of the store."""
        if digest in self._pending:
            return self._pending[digest]
        path = self.blob_path(digest)
        if not os.path.lexists(path):
            raise OciError("blob %s is missing from store '%s'" % (digest, self.path))
        try:
            return read_file(path, limit, 'blob')
        except FsError as exc:
            raise OciError('blob %s of store %s cannot be read as a document: %s' % (digest, self.path, exc))

    def read_json(self, digest):
        return loads(self.read_blob(digest), 'blob %s' % digest)

    def blob_digests(self):
        """Set of the digests of every blob held."""
        held = set(self._pending) | self._planned
        if os.path.isdir(self.blob_dir):
            held.update('sha256:' + name for name in os.listdir(self.blob_dir) if HEX64_RE.match(name))
        return held

    # -- index.json
    def _load_index(self):
        if self._index is None:
            path = os.path.join(self.path, 'index.json')
            if os.path.lexists(path):
                try:
                    self._index = loads(read_file(path, MAX_DOCUMENT, 'index'), "'%s'" % path)
                except FsError as exc:
                    raise OciError(str(exc))
            else:
                self._index = {'schemaVersion': 2, 'mediaType': MT_OCI_INDEX, 'manifests': []}
        return self._index

    def _save_index(self):
        if not self.dry_run:
            self._write_file('index.json', pretty_json(self._load_index()))

    def _entries(self):
        index = self._load_index()
        manifests = index.get('manifests') if isinstance(index, dict) else None
        return [(_ref_of(e), e) for e in manifests or [] if isinstance(e, dict)] if isinstance(manifests, list) else []

    def entry(self, ref):
        """The index.json descriptor of ``ref`` or None."""
        for name, desc in self._entries():
            if name == ref:
                return desc
        return None

    def refs(self):
        """{ref: top descriptor digest} of every image in index.json."""
        return dict((name, desc['digest']) for name, desc in self._entries() if name)

    def set_ref(self, ref, manifests):
        """Point ``ref`` at the given platform manifest descriptors; True when index.json changed.

        One manifest: the entry points at it. Several: an OCI image index listing
        them (sorted by platform) is stored and the entry points at it.
        """
        keys = [platform_key(m.get('platform')) for m in manifests]
        if not manifests or len(set(keys)) != len(keys):
            raise OciError('%s: need one manifest per platform, got platforms %s' % (ref, ', '.join(keys) or 'none'))
        if len(manifests) == 1:
            desc = dict(manifests[0])
        else:
            doc = {'schemaVersion': 2, 'mediaType': MT_OCI_INDEX,
                   'manifests': sorted(manifests, key=lambda m: platform_key(m.get('platform')))}
            digest, size = self.put_bytes(canonical_json(doc), what='image index of %s' % ref)
            desc = descriptor(MT_OCI_INDEX, digest, size)
        desc['annotations'] = {REF_ANNOTATION: ref, CONTAINERD_ANNOTATION: ref}
        entries = self._load_index()['manifests']
        old = self.entry(ref)
        if old == desc:
            return False
        if old is None:
            entries.append(desc)
        else:
            entries[entries.index(old)] = desc
        self._save_index()
        return True

    # -- reading images
    def children(self, desc):
        """Descriptors referenced by an index (manifests) or manifest (config + layers)."""
        media_type = desc.get('mediaType')
        if media_type in INDEX_TYPES:
            return list(self.read_json(desc['digest']).get('manifests') or [])
        if media_type in MANIFEST_TYPES:
            doc = self.read_json(desc['digest'])
            return [doc['config']] + list(doc.get('layers') or [])
        return []

    def _platform_manifests(self, ref):
        """[(platform_key, manifest descriptor)] of ``ref`` and its top descriptor."""
        top = self.entry(ref)
        if top is None:
            raise OciError("image '%s' is not in store '%s'" % (ref, self.path))
        if top.get('mediaType') in INDEX_TYPES:
            found = self.children(top)
        else:
            found = [top]
        result = []
        for desc in found:
            platform = desc.get('platform')
            if not platform:
                config = self.read_json(self.read_json(desc['digest'])['config']['digest'])
                platform = config_platform(config)
            result.append((platform_key(platform), desc))
        return top, result

    def images(self):
        """[{ref, digest, platforms: {'linux/amd64': manifest digest}}] of every named image, sorted by ref.

        Platform keys are :func:`_platform.platform_key` (``linux/arm64``, never ``linux/arm64/v8``);
        manifests of no real platform (attestations: ``unknown/unknown``) are left out.
        """
        out = []
        for ref, desc in self._entries():
            if not ref:
                continue
            dummy, found = self._platform_manifests(ref)
            out.append({'ref': ref, 'digest': desc['digest'],
                        'platforms': dict((key, m['digest']) for key, m in found if not key.startswith('unknown/'))})
        return sorted(out, key=lambda image: (image['ref'], image['digest']))

    def index(self):
        """The index.json document, checked to hold a manifests list (OciError naming the store otherwise)."""
        if not self.exists():
            raise OciError("store '%s' is not an OCI image layout (no oci-layout file there)" % self.path)
        try:
            index = self._load_index()
        except (IOError, OSError) as exc:
            raise OciError("store '%s': cannot read index.json: %s" % (self.path, exc))
        if not isinstance(index, dict) or not isinstance(index.get('manifests'), list):
            raise OciError("store '%s': index.json has no manifests list" % self.path)
        return index

    # -- verification
    def references(self, tops=()):
        """(digest, referrer) of every blob the images need: index.json's entries and ``tops`` [(digest, referrer)].

        Walks index -> manifests -> config/layers without trusting anything: a missing, oversized or
        malformed document just ends its branch (the caller reports the blobs it lacks), and only
        indexes and manifests are opened (an image config holds a runtime "config" key of its own).
        """
        todo = []
        try:
            index = self._load_index() if os.path.isfile(os.path.join(self.path, 'index.json')) else {}
        except (OciError, IOError, OSError):
            index = {}
        for desc in _list(index.get('manifests')) if isinstance(index, dict) else []:
            if isinstance(desc, dict):
                todo.append((desc.get('digest'), 'images/index.json', True))
        todo.extend((digest, referrer, True) for digest, referrer in tops)
        seen = set()
        out = []
        while todo:
            digest, referrer, document = todo.pop(0)
            if not isinstance(digest, str):
                out.append((digest, referrer))  # the caller reports it as an invalid digest
                continue
            if digest in seen:
                continue
            seen.add(digest)
            out.append((digest, referrer))
            doc = self._read_document(digest) if document else None
            if not isinstance(doc, dict):
                continue
            label = 'blob %s' % digest
            for child in _list(doc.get('manifests')):
                if isinstance(child, dict):
                    todo.append((child.get('digest'), label, True))
            if isinstance(doc.get('config'), dict):
                todo.append((doc['config'].get('digest'), label, False))
            for layer in _list(doc.get('layers')):
                if isinstance(layer, dict):
                    todo.append((layer.get('digest'), label, False))
        return out

    def _read_document(self, digest, limit=4 * 1024 * 1024):
        """The JSON document of a blob, or None when it is missing, too large or not JSON."""
        try:
            return loads(self.read_blob(digest, limit), digest)
        except (OciError, IOError, OSError):
            return None

    def verify(self):
        """List of problems: {ref, digest, expected, actual, msg}; empty when the store is sound."""
        problems = []
        refs_of = {}
        for ref, top in self._entries():
            self._verify_tree(ref or '<unnamed>', top, refs_of, problems, set())
        for name in sorted(os.listdir(self.blob_dir)) if os.path.isdir(self.blob_dir) else []:
            self._verify_file(name, refs_of, problems)
        return problems

    def _verify_tree(self, ref, desc, refs_of, problems, seen):
        digest = desc.get('digest', '') if isinstance(desc, dict) else None
        if not isinstance(digest, str):
            problems.append({'ref': ref, 'digest': repr(digest), 'expected': 'sha256:<64 hex>', 'actual': repr(digest),
                             'msg': '%s: a descriptor has an invalid digest: expected sha256:<64 hex>, actual %r' % (
                                 ref, digest)})
            return
        if digest in seen:
            return
        seen.add(digest)
        refs_of.setdefault(digest, set()).add(ref)

        def problem(expected, actual, what):
            problems.append({'ref': ref, 'digest': digest, 'expected': expected, 'actual': actual,
                             'msg': '%s: blob %s %s: expected %s, actual %s' % (ref, digest, what, expected, actual)})

        try:
            path = self.blob_path(digest)
        except OciError as exc:
            return problem('sha256:<64 hex>', digest, 'has a bad digest (%s)' % exc)
        if not os.path.isfile(path):
            return problem('present', 'missing', 'is missing')
        actual_size = os.path.getsize(path)
        if actual_size != desc.get('size'):
            return problem('%s bytes' % desc.get('size'), '%d bytes' % actual_size, 'has the wrong size')
        try:
            children = self.children(desc)
        except (OciError, KeyError, TypeError, AttributeError) as exc:
            return problem('a valid %s' % desc.get('mediaType'), 'unreadable (%s)' % exc, 'cannot be read')
        for child in children:
            self._verify_tree(ref, child, refs_of, problems, seen)

    def _verify_file(self, name, refs_of, problems):
        path = os.path.join(self.blob_dir, name)
        if not HEX64_RE.match(name) or not os.path.isfile(path):
            problems.append({'ref': '', 'digest': name, 'expected': 'a blob named by its sha256',
                             'actual': name, 'msg': "stray file '%s' in '%s'" % (name, self.blob_dir)})
            return
        digest = 'sha256:' + name
        with open(path, 'rb') as fh:
            actual = 'sha256:' + sha256_stream(fh)[0]
        if actual != digest:
            ref = ', '.join(sorted(refs_of.get(digest, ()))) or '<unreferenced>'
            problems.append({'ref': ref, 'digest': digest, 'expected': digest, 'actual': actual,
                             'msg': '%s: blob %s is corrupt: expected sha256 %s, actual %s' % (ref, digest, digest, actual)})


def _list(value):
    """``value`` when it is a list, else an empty list (a malformed document ends its branch)."""
    return value if isinstance(value, list) else []


def _ref_of(desc):
    """The image ref an index.json descriptor is annotated with (OCI's annotation, else containerd's)."""
    notes = desc.get('annotations') or {} if isinstance(desc, dict) else {}
    return notes.get(REF_ANNOTATION) or notes.get(CONTAINERD_ANNOTATION)
