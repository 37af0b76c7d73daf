# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading images of the store into a container runtime: the per-platform plan and the streamed layout tar."""

import hashlib
import os
import tarfile

from ansible_collections.ferry.airgap.plugins.module_utils._digest import BUF_SIZE, canonical_json, sha256_digest
from ansible_collections.ferry.airgap.plugins.module_utils._platform import format_platform, normalize_platform
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (
    INDEX_TYPES, MANIFEST_TYPES, OciError, config_platform, doc_media_type, hex_of, loads)


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
        return loads(data, 'blob %s (%s of %s)' % (desc['digest'], what, ref))

    def walk(desc, depth):
        doc = read(desc, 'index or manifest')
        media_type = desc.get('mediaType') or doc_media_type(doc)
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
        found = normalize_platform(desc.get('platform') or config_platform(config))
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
            yield _tar_header('blobs/sha256/' + hex_of(digest), size)
            hasher = hashlib.sha256()
            held = b''
            count = 0
            while count < size:
                chunk = fh.read(min(BUF_SIZE, size - count))
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
