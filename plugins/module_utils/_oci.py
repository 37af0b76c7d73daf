# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI image layout store shared by every image of a bundle.

The store is one OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/<hex>``): each blob is kept once across images, versions and
architectures. Images come from docker-archive tars (``docker save``, legacy and
Docker 25+), oci-archive tars and OCI distribution (v2) registries. The
top-level ``index.json`` holds one descriptor per image ref, annotated with the
full ref the site uses.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import socket
import ssl
import tarfile
import tempfile

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible.module_utils.six.moves.urllib.request import (
    HTTPRedirectHandler, HTTPSHandler, Request, build_opener)

from ansible_collections.ferry.airgap.plugins.module_utils._safetar import (
    GZIP_MAGIC, iter_members, member_name, member_reader, open_tar)

MT_OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
MT_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
MT_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
MT_OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar'
MT_OCI_LAYER_GZIP = MT_OCI_LAYER + '+gzip'
MT_OCI_LAYER_ZSTD = MT_OCI_LAYER + '+zstd'
MT_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
MT_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
REF_ANNOTATION = 'org.opencontainers.image.ref.name'
CONTAINERD_ANNOTATION = 'io.containerd.image.name'

# Ferry's arch names -> OCI (architecture, variant)
ARCH_PLATFORMS = {'x86_64': ('amd64', ''), 'aarch64': ('arm64', 'v8')}
DEFAULT_ARCHES = ('x86_64', 'aarch64')

MAX_DOCUMENT = 16 * 1024 * 1024
CHUNK = 1024 * 1024
_HEX_RE = re.compile(r'^[0-9a-f]{64}$')
_ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
_LOOPBACK = ('127.0.0.1', 'localhost', '::1')


class OciError(ValueError):
    """Any error of the image store, an archive or a registry."""


class RegistryError(OciError):
    """A registry could not be reached, refused us or answered nonsense."""


# ---------------------------------------------------------------- helpers

def sha256_digest(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def _hex(digest):
    algo, sep, value = (digest or '').partition(':')
    if algo != 'sha256' or not sep or not _HEX_RE.match(value):
        raise OciError("unsupported or malformed digest '%s' (expected sha256:<64 hex>)" % digest)
    return value


def canonical_json(obj):
    """Deterministic JSON bytes: the same document always has the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(',', ':')).encode('utf-8')


def _loads(data, what):
    try:
        return json.loads(data.decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as exc:
        raise OciError('%s is not valid JSON: %s' % (what, exc))


def _check_digest(data, digest, what):
    actual = sha256_digest(data)
    if actual != digest:
        raise OciError('digest mismatch for %s: expected %s, got %s (%d bytes)' % (what, digest, actual, len(data)))
    return data


def platform_arch(platform):
    """Ferry arch name (x86_64/aarch64) of an OCI platform dict, or None."""
    platform = platform or {}
    if platform.get('os') != 'linux':
        return None
    for arch, (oci_arch, dummy) in ARCH_PLATFORMS.items():
        if platform.get('architecture') == oci_arch:
            return arch
    return None


def platform_key(platform):
    """'os/arch[/variant]' of an OCI platform dict; arm64's default v8 is dropped."""
    platform = platform or {}
    key = '%s/%s' % (platform.get('os') or 'unknown', platform.get('architecture') or 'unknown')
    variant = platform.get('variant')
    if variant and not (platform.get('architecture') == 'arm64' and variant in ('v8', '8')):
        key += '/' + variant
    return key


def arch_platform_key(arch):
    """'linux/amd64' for x86_64 etc.; OciError for unsupported arches."""
    if arch not in ARCH_PLATFORMS:
        raise OciError("unsupported arch '%s' (supported: %s)" % (arch, ', '.join(sorted(ARCH_PLATFORMS))))
    return 'linux/' + ARCH_PLATFORMS[arch][0]


def _config_platform(config):
    platform = {'os': config.get('os') or '', 'architecture': config.get('architecture') or ''}
    if config.get('variant'):
        platform['variant'] = config['variant']
    return platform


def _check_platform(platform, arches, ref, source):
    arch = platform_arch(platform)
    if arch is None or arch not in arches:
        raise OciError('%s for %s is %s, expected one of: %s' % (
            source, ref, platform_key(platform), ', '.join(arch_platform_key(a) + ' (%s)' % a for a in arches)))


def _layer_media_type(head):
    if head.startswith(GZIP_MAGIC):
        return MT_OCI_LAYER_GZIP
    if head.startswith(_ZSTD_MAGIC):
        return MT_OCI_LAYER_ZSTD
    return MT_OCI_LAYER


def _descriptor(media_type, digest, size, platform=None):
    desc = {'mediaType': media_type, 'digest': digest, 'size': size}
    if platform:
        desc['platform'] = platform
    return desc


class _Peeked(object):
    """A reader that gives back ``head`` before the rest of ``fileobj``."""

    def __init__(self, head, fileobj):
        self._head = head
        self._fileobj = fileobj

    def read(self, size=-1):
        if self._head:
            data, self._head = self._head, b''
            return data
        return self._fileobj.read(size)

    def close(self):
        self._fileobj.close()


# ---------------------------------------------------------------- the store

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
            _unlink(tmp)
            raise

    # -- blobs
    def blob_path(self, digest):
        return os.path.join(self.blob_dir, _hex(digest))

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
            _unlink(tmp)
        return actual, count

    def _stream(self, src):
        """Hash ``src`` (and write it to a temp file unless dry run)."""
        hasher = hashlib.sha256()
        count = 0
        if self.dry_run:
            for chunk in _chunks(src):
                hasher.update(chunk)
                count += len(chunk)
            return 'sha256:' + hasher.hexdigest(), count, None
        self.init()
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=self.blob_dir)
        try:
            with os.fdopen(fd, 'wb') as out:
                for chunk in _chunks(src):
                    hasher.update(chunk)
                    count += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
        except BaseException:
            _unlink(tmp)
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
            _check_digest(data, digest, what)
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
        if not os.path.isfile(path):
            raise OciError("blob %s is missing from store '%s'" % (digest, self.path))
        with open(path, 'rb') as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise OciError('blob %s is larger than %d bytes, not a document' % (digest, limit))
        return data

    def read_json(self, digest):
        return _loads(self.read_blob(digest), 'blob %s' % digest)

    def blob_digests(self):
        """Set of the digests of every blob held."""
        held = set(self._pending) | self._planned
        if os.path.isdir(self.blob_dir):
            held.update('sha256:' + name for name in os.listdir(self.blob_dir) if _HEX_RE.match(name))
        return held

    # -- index.json
    def _load_index(self):
        if self._index is None:
            path = os.path.join(self.path, 'index.json')
            if os.path.isfile(path):
                with open(path, 'rb') as fh:
                    self._index = _loads(fh.read(), "'%s'" % path)
            else:
                self._index = {'schemaVersion': 2, 'mediaType': MT_OCI_INDEX, 'manifests': []}
        return self._index

    def _save_index(self):
        if not self.dry_run:
            data = json.dumps(self._load_index(), indent=2, sort_keys=True).encode('utf-8') + b'\n'
            self._write_file('index.json', data)

    def _entries(self):
        return [(e.get('annotations', {}).get(REF_ANNOTATION), e) for e in self._load_index()['manifests']]

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
            desc = _descriptor(MT_OCI_INDEX, digest, size)
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
                platform = _config_platform(config)
            result.append((platform_key(platform), desc))
        return top, result

    def images(self):
        """[{ref, digest, platforms: {'linux/amd64': manifest digest}}] of every image."""
        out = []
        for ref, desc in self._entries():
            if not ref:
                continue
            dummy, found = self._platform_manifests(ref)
            out.append({'ref': ref, 'digest': desc['digest'],
                        'platforms': dict((key, m['digest']) for key, m in found)})
        return out

    def required_blobs(self, ref, platform):
        """[(digest, size)] needed to import ``ref`` for one platform (arch or 'os/arch')."""
        key = arch_platform_key(platform) if platform in ARCH_PLATFORMS else platform
        top, found = self._platform_manifests(ref)
        chosen = [m for k, m in found if k == key or k.startswith(key + '/')]
        if not chosen:
            raise OciError("image '%s' has no platform %s (has: %s)" % (ref, key, ', '.join(k for k, m in found)))
        needed = [top] if top is not chosen[0] else []
        needed += [chosen[0]] + self.children(chosen[0])
        result = []
        for desc in needed:
            item = (desc['digest'], desc['size'])
            if item not in result:
                result.append(item)
        return result

    def layout_files(self, refs=None):
        """Relative paths of the layout files needed for ``refs`` (default: all)."""
        wanted = set(refs) if refs is not None else None
        files = ['oci-layout', 'index.json']
        for ref, top in self._entries():
            if wanted is None or ref in wanted:
                for desc in self._walk(top):
                    path = 'blobs/sha256/' + _hex(desc['digest'])
                    if path not in files:
                        files.append(path)
        return files

    def _walk(self, desc):
        yield desc
        for child in self.children(desc):
            yield from self._walk(child)

    def export_layout(self, dest, refs=None):
        """Write ``refs`` (default all) as an OCI layout in ``dest`` (hardlinks when possible)."""
        target = ImageStore(dest)
        target.init()
        for rel in self.layout_files(refs)[2:]:
            src, dst = os.path.join(self.path, rel), os.path.join(dest, rel)
            if not os.path.exists(dst):
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
        index = target._load_index()
        index['manifests'] = [e for r, e in self._entries() if refs is None or r in refs]
        target._save_index()
        return target

    # -- verification
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
        digest = desc.get('digest', '')
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
        except (OciError, KeyError, TypeError) as exc:
            return problem('a valid %s' % desc.get('mediaType'), 'unreadable (%s)' % exc, 'cannot be read')
        for child in children:
            self._verify_tree(ref, child, refs_of, problems, seen)

    def _verify_file(self, name, refs_of, problems):
        path = os.path.join(self.blob_dir, name)
        if not _HEX_RE.match(name) or not os.path.isfile(path):
            problems.append({'ref': '', 'digest': name, 'expected': 'a blob named by its sha256',
                             'actual': name, 'msg': "stray file '%s' in '%s'" % (name, self.blob_dir)})
            return
        digest = 'sha256:' + name
        with open(path, 'rb') as fh:
            actual = 'sha256:' + _hash_file(fh)
        if actual != digest:
            ref = ', '.join(sorted(refs_of.get(digest, ()))) or '<unreferenced>'
            problems.append({'ref': ref, 'digest': digest, 'expected': digest, 'actual': actual,
                             'msg': '%s: blob %s is corrupt: expected sha256 %s, actual %s' % (ref, digest, digest, actual)})


def _chunks(src):
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return
        yield chunk


def _hash_file(fh):
    hasher = hashlib.sha256()
    for chunk in _chunks(fh):
        hasher.update(chunk)
    return hasher.hexdigest()


def _unlink(path):
    if path and os.path.lexists(path):
        os.unlink(path)


# ---------------------------------------------------------------- loading into a container runtime

def normalize_platform(platform):
    """(os, arch, variant) of a platform dict or 'os/arch[/variant]', normalised as containerd does.

    Equal tuples match under containerd's strict platform matcher (``ctr images import --platform``):
    arm64's v8 variant is the default (dropped), arm defaults to v7, x86_64/aarch64 are amd64/arm64.
    """
    if isinstance(platform, dict):
        os_name, arch, variant = platform.get('os') or '', platform.get('architecture') or '', platform.get('variant') or ''
    else:
        parts = (platform or '').split('/')
        if len(parts) not in (2, 3) or not all(parts):
            raise OciError("invalid platform '%s' (expected os/arch[/variant], e.g. linux/amd64)" % platform)
        os_name, arch, variant = parts[0], parts[1], parts[2] if len(parts) == 3 else ''
    os_name, arch, variant = os_name.lower(), arch.lower(), variant.lower()
    if os_name == 'macos':
        os_name = 'darwin'
    if arch == 'i386':
        arch, variant = '386', ''
    elif arch in ('x86_64', 'x86-64', 'amd64'):
        arch = 'amd64'
        variant = '' if variant == 'v1' else variant
    elif arch in ('aarch64', 'arm64'):
        arch = 'arm64'
        variant = '' if variant in ('8', 'v8') else variant
    elif arch == 'armhf':
        arch, variant = 'arm', 'v7'
    elif arch == 'armel':
        arch, variant = 'arm', 'v6'
    elif arch == 'arm':
        variant = {'': 'v7', '7': 'v7', '5': 'v5', '6': 'v6', '8': 'v8'}.get(variant, variant)
    return os_name, arch, variant


def format_platform(normalized):
    """'os/arch[/variant]' of a normalize_platform() tuple."""
    return '/'.join(part for part in normalized if part)


def chain_id(diff_ids):
    """Chain ID of a layer stack (the key of the committed snapshot once unpacked); None without layers."""
    chain = None
    for diff_id in diff_ids:
        chain = diff_id if chain is None else sha256_digest(('%s %s' % (chain, diff_id)).encode('ascii'))
    return chain


def platform_plan(store, ref, platform):
    """What loading ``ref`` of ``store`` for one platform needs, walked the way containerd walks it.

    Returns a dict: ``top`` (the index.json descriptor), ``manifests`` (matching image manifest
    descriptors), ``blobs`` ([(digest, size, kind)], indexes and manifests before their children),
    ``chain_id`` (of the first matching manifest: its snapshot exists once unpacked) and ``platforms``
    (every platform the image has). Manifests of other platforms are neither read nor listed.
    OciError names the ref and the platforms it has when none matches.
    """
    top = store.entry(ref)
    if top is None:
        raise OciError("image '%s' is not in store '%s' (it has: %s)" % (
            ref, store.path, ', '.join(sorted(store.refs())) or 'no image'))
    wanted = normalize_platform(platform)
    plan = {'ref': ref, 'top': top, 'manifests': [], 'blobs': [], 'chain_id': None, 'platforms': []}

    def add(desc, kind):
        item = (desc['digest'], desc['size'], kind)
        if all(b[0] != item[0] for b in plan['blobs']):
            plan['blobs'].append(item)

    def read(desc, what):
        try:
            data = store.read_blob(desc['digest'])
        except OciError as exc:
            raise OciError('image %s: cannot read its %s: %s' % (ref, what, exc))
        actual = sha256_digest(data)
        if actual != desc['digest'] or len(data) != desc.get('size', len(data)):
            raise BlobMismatchError(desc['digest'], actual, desc.get('size', len(data)), len(data),
                                    "blob %s (%s of %s) in store '%s'" % (desc['digest'], what, ref, store.path))
        return _loads(data, 'blob %s (%s of %s)' % (desc['digest'], what, ref))

    def walk(desc, depth):
        doc = read(desc, 'index or manifest')
        media_type = desc.get('mediaType') or _doc_media_type(doc)
        if media_type in INDEX_TYPES and depth < 4:
            add(desc, 'index')
            for child in doc.get('manifests') or []:
                if child.get('platform'):
                    key = format_platform(normalize_platform(child['platform']))
                    if key not in plan['platforms']:
                        plan['platforms'].append(key)
                    if normalize_platform(child['platform']) != wanted:
                        continue
                walk(child, depth + 1)
            return
        if media_type not in MANIFEST_TYPES or 'config' not in doc:
            raise OciError('image %s: unsupported media type %s of %s' % (ref, media_type, desc['digest']))
        add(desc, 'manifest')
        config = read(doc['config'], 'config')
        found = normalize_platform(desc.get('platform') or _config_platform(config))
        if format_platform(found) not in plan['platforms']:
            plan['platforms'].append(format_platform(found))
        if found != wanted:
            return
        plan['manifests'].append(desc)
        add(doc['config'], 'config')
        for layer_desc in doc.get('layers') or []:
            add(layer_desc, 'layer')
        if len(plan['manifests']) == 1:
            plan['chain_id'] = chain_id((config.get('rootfs') or {}).get('diff_ids') or [])

    walk(top, 0)
    if not plan['manifests']:
        raise OciError("image %s has no platform %s (it has: %s)" % (
            ref, format_platform(wanted), ', '.join(plan['platforms']) or 'none'))
    return plan


class BlobMismatchError(OciError):
    """A blob of the store does not match its digest or size while being streamed."""

    def __init__(self, digest, actual, size, actual_size, what):
        self.digest, self.actual, self.size, self.actual_size, self.what = digest, actual, size, actual_size, what
        if size != actual_size:
            detail = 'expected %d bytes, found %d' % (size, actual_size)
        else:
            detail = 'expected %s, actual %s' % (digest, actual)
        super(BlobMismatchError, self).__init__('%s is corrupt: %s' % (what, detail))


def _tar_header(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(tarfile.PAX_FORMAT, 'utf-8', 'surrogateescape')


_CUT = b'\0' * (tarfile.BLOCKSIZE // 2)  # half a header block: the reader fails with an unexpected EOF


def _tar_padding(size):
    return b'\0' * ((tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE) % tarfile.BLOCKSIZE)


def layout_tar(store, index, blobs, progress=None, describe=None):
    """Yield, chunk by chunk, a tar of an OCI image layout: no temporary file, no second copy.

    Members: ``oci-layout``, ``index.json`` (the ``index`` document) and ``blobs/sha256/<hex>`` for
    each (digest, size[, ...]) of ``blobs``, read from ``store``. Every blob is hashed while it
    streams and the last chunk of each blob is held back until its digest is confirmed: on a
    mismatch BlobMismatchError is raised and the consumer is left with a tar cut inside a member or
    a header block, never with a complete corrupt blob. (A tar cut at a member boundary would not do:
    ctr 1.6 takes it for a complete archive and tags the images.) ``progress(n)`` is called with the
    size of each blob sent; ``describe(digest)`` names a blob in errors.
    """
    describe = describe or (lambda digest: 'blob %s' % digest)
    for name, data in (('oci-layout', canonical_json({'imageLayoutVersion': '1.0.0'})),
                       ('index.json', canonical_json(index))):
        yield _tar_header(name, len(data)) + data + _tar_padding(len(data))
    for blob in blobs:
        digest, size = blob[0], blob[1]
        what = "%s in store '%s'" % (describe(digest), store.path)
        path = store.blob_path(digest)
        try:
            fh = open(path, 'rb')
        except (IOError, OSError) as exc:
            yield _CUT
            raise OciError('%s cannot be read: %s' % (what, exc))
        with fh:
            actual_size = os.fstat(fh.fileno()).st_size
            if actual_size != size:
                yield _CUT
                raise BlobMismatchError(digest, None, size, actual_size, what)
            yield _tar_header('blobs/sha256/' + _hex(digest), size)
            hasher = hashlib.sha256()
            held = b''
            count = 0
            while count < size:
                chunk = fh.read(min(CHUNK, size - count))
                if not chunk:
                    break
                hasher.update(chunk)
                count += len(chunk)
                if held:
                    yield held
                held = chunk
        actual = 'sha256:' + hasher.hexdigest()
        if count != size or actual != digest:
            if size == 0:
                yield _CUT  # an empty member is complete after its header: cut inside the next one
            raise BlobMismatchError(digest, actual, size, count, what)
        yield held + _tar_padding(size)
        if progress:
            progress(size)
    yield b'\0' * (2 * tarfile.BLOCKSIZE)


# ---------------------------------------------------------------- copying images from a source

def _select_platforms(source, top, ref, arches):
    """Platform manifest descriptors of ``top`` for ``arches`` (errors name ref and arch)."""
    if top['mediaType'] not in INDEX_TYPES:
        return [top]
    doc = _loads(source.read_doc(top), 'image index %s of %s' % (top['digest'], ref))
    available = [m for m in doc.get('manifests') or [] if m.get('mediaType', MT_OCI_MANIFEST) in MANIFEST_TYPES]
    chosen = []
    for arch in arches:
        match = [m for m in available if platform_arch(m.get('platform')) == arch]
        if not match:
            raise OciError('%s (%s) has no platform for arch %s (%s); available: %s' % (
                ref, source.name, arch, arch_platform_key(arch),
                ', '.join(platform_key(m.get('platform')) for m in available) or 'none'))
        chosen.append(dict(match[0], mediaType=match[0].get('mediaType', MT_OCI_MANIFEST)))
    return chosen


def copy_image(store, source, top, ref, arches, strict_single=False):
    """Copy the image ``top`` of ``source`` into ``store`` for ``arches``.

    Returns the platform manifest descriptors (for ImageStore.set_ref). Config
    and platforms are checked before any blob is written; layers are written
    before their manifest.
    """
    plans = []
    for desc in _select_platforms(source, top, ref, arches):
        data = source.read_doc(desc)
        manifest = _loads(data, 'manifest %s of %s' % (desc['digest'], ref))
        media_type = desc.get('mediaType') or manifest.get('mediaType')
        if media_type not in MANIFEST_TYPES or 'config' not in manifest:
            raise OciError('%s (%s): manifest %s has unsupported media type %s' % (
                ref, source.name, desc['digest'], media_type))
        config_bytes = source.read_doc(manifest['config'])
        platform = desc.get('platform') or _config_platform(_loads(config_bytes, 'config of %s' % ref))
        if strict_single and len(arches) > 1 and top['mediaType'] not in INDEX_TYPES:
            missing = [a for a in arches if a != platform_arch(platform)]
            raise OciError('%s (%s) is a single-platform image (%s); no platform for arch %s' % (
                ref, source.name, platform_key(platform), ', '.join(missing)))
        _check_platform(platform, arches, ref, source.name)
        plans.append((desc, data, manifest, config_bytes, platform))
    result = []
    for desc, data, manifest, config_bytes, platform in plans:
        store.put_bytes(config_bytes, manifest['config']['digest'], 'config of %s (%s)' % (ref, source.name))
        for layer in source.order(manifest.get('layers') or []):
            store.put_blob(_opener(source, layer), layer['digest'], layer.get('size'),
                           'layer %s of %s (%s)' % (layer['digest'], ref, source.name))
        digest, size = store.put_bytes(data, desc['digest'], 'manifest of %s (%s)' % (ref, source.name))
        result.append(_descriptor(desc.get('mediaType') or manifest.get('mediaType'), digest, size, platform))
    return result


def _opener(source, desc):
    return lambda: source.open_blob(desc)


# ---------------------------------------------------------------- archives

@contextlib.contextmanager
def _open_archive(path):
    """(tar, {name: member}) after checking every member of the archive."""
    if not os.path.isfile(path):
        raise OciError("archive '%s' does not exist or is not a file" % path)
    tar = open_tar(path)
    try:
        members = {}
        for member in iter_members(tar, path):
            members[member_name(member)] = member
        yield tar, members
    finally:
        tar.close()


def _regular_member(members, name, path):
    """The regular member behind ``name``, following links inside the archive."""
    name = posixpath.normpath(name)
    for dummy in range(32):
        member = members.get(name)
        if member is None:
            raise OciError("archive '%s' has no member '%s'" % (path, name))
        if member.isreg():
            return member
        if member.issym():
            name = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        elif member.islnk():
            name = posixpath.normpath(member.linkname)
        else:
            break
    raise OciError("archive '%s': member '%s' is not a regular file" % (path, name))


def _read_member(tar, members, name, path, limit=MAX_DOCUMENT):
    member = _regular_member(members, name, path)
    if member.size > limit:
        raise OciError("archive '%s': member '%s' is too large (%d bytes) for a document" % (path, name, member.size))
    reader = member_reader(tar, member, path)
    try:
        return reader.read()
    finally:
        reader.close()


class _ArchiveSource(object):
    """Blobs of an oci-archive (``blobs/sha256/<hex>`` members)."""

    def __init__(self, tar, members, path):
        self.tar, self.members, self.path = tar, members, path
        self.name = "oci-archive '%s'" % path

    def _member(self, desc):
        return _regular_member(self.members, 'blobs/sha256/' + _hex(desc['digest']), self.path)

    def read_doc(self, desc):
        data = _read_member(self.tar, self.members, 'blobs/sha256/' + _hex(desc['digest']), self.path)
        return _check_digest(data, desc['digest'], "blob '%s' of %s" % (desc['digest'], self.name))

    def open_blob(self, desc):
        return member_reader(self.tar, self._member(desc), self.path)

    def order(self, descs):
        return sorted(descs, key=lambda d: self._member(d).offset_data)


def _ref_matches(name, ref):
    """True when ``name`` (from an archive) designates ``ref`` (tag-only names match the tag)."""
    if not name:
        return False
    if name == ref or ref.endswith('/' + name):
        return True
    return ':' not in name and '/' not in name and ref.rsplit('/', 1)[-1].partition(':')[2] == name


def _select_one(items, names_of, ref, path):
    if len(items) == 1:
        return items[0]
    matches = [item for item in items if any(_ref_matches(n, ref) for n in names_of(item))]
    if len(matches) != 1:
        raise OciError("archive '%s' holds %d images (%s); cannot tell which one is %s" % (
            path, len(items), ', '.join(', '.join(names_of(i)) or '<untagged>' for i in items), ref))
    return matches[0]


def import_oci_archive(store, path, ref, arches=DEFAULT_ARCHES):
    """Copy image ``ref`` of an oci-archive tar into ``store``; returns platform manifest descriptors."""
    with _open_archive(path) as (tar, members):
        layout = _loads(_read_member(tar, members, 'oci-layout', path), "oci-layout of '%s'" % path)
        if not isinstance(layout, dict) or 'imageLayoutVersion' not in layout:
            raise OciError("archive '%s': oci-layout has no imageLayoutVersion" % path)
        index = _loads(_read_member(tar, members, 'index.json', path), "index.json of '%s'" % path)
        entries = index.get('manifests') or []
        if not entries:
            raise OciError("archive '%s': index.json lists no image" % path)
        source = _ArchiveSource(tar, members, path)
        top = dict(_select_one(entries, _annotation_names, ref, path))
        if not top.get('mediaType'):
            top['mediaType'] = _doc_media_type(_loads(source.read_doc(top), 'image %s of %s' % (top['digest'], path)))
        return copy_image(store, source, top, ref, list(arches))


def _doc_media_type(doc):
    """Media type of a manifest or index document that may not state it."""
    if not isinstance(doc, dict):
        return None
    return doc.get('mediaType') or (MT_OCI_INDEX if 'manifests' in doc else MT_OCI_MANIFEST)


def _annotation_names(desc):
    notes = desc.get('annotations') or {}
    return [n for n in (notes.get(REF_ANNOTATION), notes.get(CONTAINERD_ANNOTATION)) if n]


def _name_digest(name):
    """Digest implied by a blob-like member name (blobs/sha256/<hex> or <hex>.json)."""
    match = re.match(r'^(?:.*/)?blobs/sha256/([0-9a-f]{64})$', name) or re.match(r'^([0-9a-f]{64})\.json$', name)
    return 'sha256:' + match.group(1) if match else None


def import_docker_archive(store, path, ref, arches=DEFAULT_ARCHES):
    """Copy image ``ref`` of a ``docker save`` tar into ``store`` as an OCI image manifest.

    Handles the legacy layout (``<id>/layer.tar``) and Docker 25+ (``blobs/sha256``).
    Returns a one-element list of platform manifest descriptors.
    """
    with _open_archive(path) as (tar, members):
        entries = _loads(_read_member(tar, members, 'manifest.json', path), "manifest.json of '%s'" % path)
        if not isinstance(entries, list) or not entries:
            raise OciError("archive '%s': manifest.json lists no image" % path)
        entry = _select_one(entries, lambda e: e.get('RepoTags') or [], ref, path)
        config_bytes = _read_member(tar, members, entry['Config'], path)
        config_digest = _name_digest(posixpath.normpath(entry['Config']))
        if config_digest:
            _check_digest(config_bytes, config_digest, "config '%s' of archive '%s'" % (entry['Config'], path))
        config = _loads(config_bytes, "config '%s' of archive '%s'" % (entry['Config'], path))
        platform = _config_platform(config)
        _check_platform(platform, list(arches), ref, "docker-archive '%s'" % path)
        layer_names = list(entry.get('Layers') or [])
        diff_ids = list((config.get('rootfs') or {}).get('diff_ids') or [])
        if len(diff_ids) != len(layer_names):
            raise OciError("archive '%s': %s lists %d layers but its config has %d diff_ids" % (
                path, ref, len(layer_names), len(diff_ids)))
        layers = _put_docker_layers(store, tar, members, path, layer_names, diff_ids)
        digest, size = store.put_bytes(config_bytes, what="config of %s (archive '%s')" % (ref, path))
        manifest = {'schemaVersion': 2, 'mediaType': MT_OCI_MANIFEST,
                    'config': _descriptor(MT_OCI_CONFIG, digest, size), 'layers': layers}
        digest, size = store.put_bytes(canonical_json(manifest), what='manifest of %s' % ref)
        return [_descriptor(MT_OCI_MANIFEST, digest, size, platform)]


def _put_docker_layers(store, tar, members, path, names, diff_ids):
    """Store the layers (read in archive order) and return their descriptors in image order."""
    resolved = [_regular_member(members, name, path) for name in names]
    layers = [None] * len(names)
    for i in sorted(range(len(names)), key=lambda n: resolved[n].offset_data):
        reader = member_reader(tar, resolved[i], path)
        head = reader.read(8)
        media_type = _layer_media_type(head)
        what = "layer '%s' of archive '%s'" % (names[i], path)
        expected = _name_digest(posixpath.normpath(names[i]))
        if media_type == MT_OCI_LAYER:
            if expected and expected != diff_ids[i]:
                reader.close()
                raise OciError('digest mismatch for %s: expected diff_id %s, got %s' % (what, diff_ids[i], expected))
            expected = diff_ids[i]
        peeked = _Peeked(head, reader)
        digest, size = store.put_blob(lambda: peeked, expected, resolved[i].size, what)
        peeked.close()
        layers[i] = _descriptor(media_type, digest, size)
    return layers


# ---------------------------------------------------------------- registries

def parse_ref(ref):
    """(registry host, repository, tag, digest) of an image reference."""
    name, dummy, digest = ref.partition('@')
    tag = None
    slash = name.rfind('/')
    if ':' in name[slash + 1:]:
        name, tag = name.rsplit(':', 1)
    parts = name.split('/', 1)
    if len(parts) == 2 and ('.' in parts[0] or ':' in parts[0] or parts[0] == 'localhost'):
        host, repo = parts
    else:
        host, repo = 'docker.io', name
    if host == 'docker.io':
        host = 'registry-1.docker.io'
        if '/' not in repo:
            repo = 'library/' + repo
    if not repo or not re.match(r'^[a-z0-9]+(?:[._/-]+[a-z0-9]+)*$', repo) or (digest and not _HEX_RE.match(
            digest.partition(':')[2])):
        raise OciError("invalid image reference '%s'" % ref)
    return host, repo, tag or (None if digest else 'latest'), digest or None


def parse_www_authenticate(header):
    """('bearer'|'basic', {param: value}) of a WWW-Authenticate header."""
    scheme, dummy, rest = (header or '').strip().partition(' ')
    params = dict((k.lower(), v or q) for k, v, q in
                  re.findall(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))', rest))
    return scheme.lower(), params


def _is_loopback(host):
    hostname = host.rsplit(':', 1)[0] if not host.startswith('[') else host[1:].split(']')[0]
    return hostname in _LOOPBACK


class _RedirectHandler(HTTPRedirectHandler):
    """Follow 308 too (blob downloads may be redirected to a storage backend)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if code == 308:
            code = 307
        return HTTPRedirectHandler.redirect_request(self, req, fp, code, msg, headers, newurl)

    http_error_308 = HTTPRedirectHandler.http_error_302


class RegistryClient(object):
    """Minimal OCI distribution (v2) client: GET manifests and blobs with Basic/Bearer auth."""

    def __init__(self, host, repository, ref, username=None, password=None, insecure=False,
                 ca_file=None, timeout=60):
        scheme = 'http' if insecure or _is_loopback(host) else 'https'
        self.url = '%s://%s' % (scheme, host)
        self.repository = repository
        self.ref = ref
        self.username, self.password = username, password
        self.insecure = insecure
        self.timeout = timeout
        self._auth = None
        context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._opener = build_opener(HTTPSHandler(context=context), _RedirectHandler())

    def _open(self, url, headers, auth=None):
        req = Request(url, headers=headers)
        if auth:
            req.add_unredirected_header('Authorization', auth)
        try:
            return self._opener.open(req, timeout=self.timeout)
        except HTTPError:
            raise
        except (URLError, socket.timeout, ssl.SSLError, OSError) as exc:
            reason = getattr(exc, 'reason', exc)
            raise RegistryError('cannot reach registry %s for %s: %s (timeout %ss)' % (
                self.url, self.ref, reason, self.timeout))

    def get(self, path, accept=None):
        """Response of GET /v2/<repository>/<path>, authenticating once on 401."""
        url = '%s/v2/%s/%s' % (self.url, self.repository, path)
        headers = {'Accept': ', '.join(accept)} if accept else {}
        for attempt in (1, 2):
            try:
                return self._open(url, headers, self._auth)
            except HTTPError as exc:
                if exc.code == 401 and attempt == 1 and self._authenticate(exc):
                    continue
                raise self._http_error(exc, path)

    def _http_error(self, exc, path):
        body = _read_text(exc)
        if exc.code == 401:
            if self.username is None:
                return RegistryError('registry %s requires authentication for %s (HTTP 401): give username and password'
                                     % (self.url, self.ref))
            return RegistryError('authentication failed at registry %s for %s as %s (HTTP 401): %s' % (
                self.url, self.ref, self.username, body))
        return RegistryError('registry %s answered HTTP %d for %s (%s): %s' % (self.url, exc.code, path, self.ref, body))

    def _authenticate(self, exc):
        scheme, params = parse_www_authenticate(exc.headers.get('WWW-Authenticate'))
        _read_text(exc)
        if scheme == 'basic' and self.username is not None:
            self._auth = _basic_auth(self.username, self.password)
            return True
        if scheme == 'bearer' and params.get('realm'):
            self._auth = 'Bearer ' + self._token(params)
            return True
        return False

    def _token(self, params):
        realm = params['realm']
        scheme, dummy, rest = realm.partition('://')
        if scheme != 'https' and not (scheme == 'http' and (self.insecure or _is_loopback(rest.split('/')[0]))):
            raise RegistryError('registry %s sent token realm %s; refusing a non-https token service' % (
                self.url, realm))
        query = dict((k, params[k]) for k in ('service', 'scope') if params.get(k))
        query.setdefault('scope', 'repository:%s:pull' % self.repository)
        url = realm + ('&' if '?' in realm else '?') + urlencode(query)
        auth = _basic_auth(self.username, self.password) if self.username is not None else None
        try:
            resp = self._open(url, {}, auth)
        except HTTPError as exc:
            raise RegistryError('token service %s refused %s for %s: HTTP %d %s' % (
                realm, self.username or 'anonymous', self.ref, exc.code, _read_text(exc)))
        with contextlib.closing(resp):
            doc = _loads(resp.read(MAX_DOCUMENT), 'token answer of %s' % realm)
        token = doc.get('token') or doc.get('access_token') if isinstance(doc, dict) else None
        if not token:
            raise RegistryError('token service %s answered without a token for %s' % (realm, self.ref))
        return token


def _basic_auth(username, password):
    raw = ('%s:%s' % (username, password or '')).encode('utf-8')
    return 'Basic ' + base64.b64encode(raw).decode('ascii')


def _read_text(resp, limit=2048):
    try:
        return resp.read(limit).decode('utf-8', 'replace').strip()
    except Exception:
        return ''


class _ResponseReader(object):
    """A blob download whose read errors (timeouts, cut connections) become RegistryError."""

    def __init__(self, resp, client, digest):
        self._resp, self._client, self._digest = resp, client, digest

    def read(self, size=-1):
        try:
            return self._resp.read(size)
        except (OSError, socket.timeout, http_client.HTTPException) as exc:
            raise RegistryError('download of blob %s of %s from registry %s failed: %s' % (
                self._digest, self._client.ref, self._client.url, exc))

    def close(self):
        self._resp.close()


MANIFEST_ACCEPT = (MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST)


class _RegistrySource(object):
    """Documents and blobs of one repository of a registry."""

    def __init__(self, client):
        self.client = client
        self.name = 'registry %s' % client.url
        self._docs = {}

    def _read(self, path, accept=None):
        resp = self.client.get(path, accept)
        with contextlib.closing(resp):
            data = resp.read(MAX_DOCUMENT + 1)
            media_type = (resp.headers.get('Content-Type') or '').split(';')[0].strip()
            header_digest = resp.headers.get('Docker-Content-Digest')
        if len(data) > MAX_DOCUMENT:
            raise RegistryError('%s: %s is larger than %d bytes' % (self.name, path, MAX_DOCUMENT))
        return data, media_type, header_digest

    def top(self, reference):
        """Descriptor of the manifest or index a tag/digest points at."""
        data, media_type, header_digest = self._read('manifests/' + reference, MANIFEST_ACCEPT)
        digest = sha256_digest(data)
        for expected in (reference if reference.startswith('sha256:') else None, header_digest):
            if expected and expected != digest:
                raise OciError('digest mismatch for manifest %s of %s (%s): expected %s, got %s' % (
                    reference, self.client.ref, self.name, expected, digest))
        if media_type not in MANIFEST_ACCEPT:
            media_type = _doc_media_type(_loads(data, 'manifest %s of %s' % (reference, self.client.ref)))
        if media_type not in MANIFEST_ACCEPT:
            raise OciError('%s (%s): unsupported manifest media type %s' % (self.client.ref, self.name, media_type))
        self._docs[digest] = data
        return _descriptor(media_type, digest, len(data))

    def read_doc(self, desc):
        digest = desc['digest']
        if digest not in self._docs:
            kind = 'manifests' if desc.get('mediaType') in MANIFEST_ACCEPT else 'blobs'
            data = self._read('%s/%s' % (kind, digest), MANIFEST_ACCEPT if kind == 'manifests' else None)[0]
            self._docs[digest] = _check_digest(data, digest, '%s %s of %s (%s)' % (
                kind[:-1], digest, self.client.ref, self.name))
        return self._docs[digest]

    def open_blob(self, desc):
        return _ResponseReader(self.client.get('blobs/' + desc['digest']), self.client, desc['digest'])

    @staticmethod
    def order(descs):
        return descs


def pull_image(store, source_ref, arches=DEFAULT_ARCHES, username=None, password=None,
               insecure=False, ca_file=None, timeout=60):
    """Copy ``source_ref`` from its registry into ``store`` for every arch of ``arches``.

    Returns the platform manifest descriptors (for ImageStore.set_ref(ref, ...)).
    A requested arch missing from the image is an error naming the ref and arch.
    """
    host, repository, tag, digest = parse_ref(source_ref)
    client = RegistryClient(host, repository, source_ref, username, password, insecure, ca_file, timeout)
    source = _RegistrySource(client)
    top = source.top(digest or tag)
    return copy_image(store, source, top, source_ref, list(arches), strict_single=True)


# ---------------------------------------------------------------- declared image lists

def import_spec(store, spec, arches=DEFAULT_ARCHES):
    """Import one image declaration ({ref, docker_archive|oci_archive|registry, arch}); returns descriptors."""
    arches = [spec['arch']] if spec.get('arch') else list(arches)
    for arch in arches:
        arch_platform_key(arch)
    if spec.get('docker_archive'):
        return import_docker_archive(store, spec['docker_archive'], spec['ref'], arches)
    if spec.get('oci_archive'):
        return import_oci_archive(store, spec['oci_archive'], spec['ref'], arches)
    if spec.get('registry'):
        reg = spec['registry']
        return pull_image(store, reg['ref'], arches, reg.get('username'), reg.get('password'),
                          bool(reg.get('insecure')), reg.get('ca_file'), reg.get('timeout') or 60)
    raise OciError("image %s: give one of docker_archive, oci_archive or registry" % spec.get('ref'))


def sync_images(store, specs, arches=DEFAULT_ARCHES):
    """Import every declaration; several declarations of one ref are merged (one per platform).

    Returns {'added': [refs], 'updated': [refs]} comparing index.json before and after.
    """
    before = store.refs()
    grouped = []
    for spec in specs:
        found = [g for g in grouped if g[0] == spec['ref']]
        if found:
            found[0][1].append(spec)
        else:
            grouped.append((spec['ref'], [spec]))
    for ref, group in grouped:
        manifests = []
        for spec in group:
            manifests.extend(import_spec(store, spec, arches))
        store.set_ref(ref, manifests)
    after = store.refs()
    return {'added': [r for r, g in grouped if r not in before],
            'updated': [r for r, g in grouped if r in before and before[r] != after[r]]}
