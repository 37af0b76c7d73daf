# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Layer compression at import time (build side only): plain tar layers stored as zstd or gzip, deterministically.

* Compression is deterministic: zstd level 3 through the ``zstandard`` package (no threads, no checksum,
  no content size, no dictionary), gzip level 6 through ``gzip.GzipFile(mtime=0, filename='')``; the input
  is fed in fixed 1 MiB chunks. Same layer and same library versions, same bytes.
* A compressed layer Ferry writes carries the annotation ``DIFF_ID_ANNOTATION`` (its uncompressed digest,
  checked while compressing) on its descriptor in the manifest. :class:`LayerWriter` rebuilds the map
  diff_id -> stored blob from those annotations in the store's manifests, so the same uncompressed layer
  from two archives (or a rerun) is stored once and not compressed again. Nothing else is written: the
  map lives in the signed manifests themselves.
* Layers that arrive compressed are kept byte for byte, but decompressed on the way in and checked
  against the config's diff_id, so a corrupt compressed stream fails the build naming the layer.

``zstandard`` is imported lazily, only when a zstd layer is written or checked: code that runs on hosts
(image_load, _runtime) never imports this module (tests/unit/plugins/test_layers.py).
"""

import gzip
import hashlib
import io
import zlib

from ansible_collections.ferry.airgap.plugins.module_utils._digest import BUF_SIZE
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (
    INDEX_TYPES, MANIFEST_TYPES, MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, OciError, descriptor,
    layer_compression, layer_media_type)

COMPRESSIONS = ('zstd', 'gzip', 'none')
DEFAULT_COMPRESSION = 'zstd'
ZSTD_LEVEL = 3
GZIP_LEVEL = 6
DIFF_ID_ANNOTATION = 'io.ferry.airgap.layer.diff_id'
MEDIA_TYPE = {'zstd': MT_OCI_LAYER_ZSTD, 'gzip': MT_OCI_LAYER_GZIP, 'none': MT_OCI_LAYER}


def check_compression(name):
    """``name`` when it is one of COMPRESSIONS, else OciError naming the choices."""
    if name not in COMPRESSIONS:
        raise OciError('unknown layer compression %r (choose one of: %s)' % (name, ', '.join(COMPRESSIONS)))
    return name


def zstandard():
    """The ``zstandard`` module, imported on first use; OciError saying how to get it when missing."""
    try:
        import zstandard as module
    except ImportError:
        raise OciError("zstd layers need the Python package 'zstandard' on the build machine "
                       "(pip install zstandard, see requirements-dev.txt), or set images_compression: gzip or none "
                       "in the bundle spec")
    return module


class _GzipStream(object):
    """compress()/flush() over gzip.GzipFile with a fixed header (mtime 0, no file name)."""

    def __init__(self):
        self._buf = io.BytesIO()
        self._gz = gzip.GzipFile(filename='', mode='wb', fileobj=self._buf, compresslevel=GZIP_LEVEL, mtime=0)

    def _drain(self):
        data = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        return data

    def compress(self, data):
        self._gz.write(data)
        return self._drain()

    def flush(self):
        self._gz.close()
        return self._drain()


def compressor(compression):
    """A fresh compress()/flush() object for ``compression`` ('zstd' or 'gzip')."""
    if compression == 'zstd':
        return zstandard().ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False, write_content_size=False,
                                          write_dict_id=False, threads=0).compressobj()
    if compression == 'gzip':
        return _GzipStream()
    raise OciError('no compressor for %r' % (compression,))


class CompressingReader(object):
    """read() gives the compressed stream of ``src``; at its end the uncompressed sha256 must be ``diff_id``.

    A mismatch raises OciError before the last bytes are handed out, so the store never keeps the blob.
    """

    def __init__(self, src, compression, diff_id, what):
        self._src, self._what, self._diff_id = src, what, diff_id
        self._comp = compressor(compression)
        self._hash = hashlib.sha256()
        self._done = False
        self.size = 0

    def read(self, size=-1):
        while not self._done:
            raw = self._src.read(BUF_SIZE)
            if not raw:
                self._done = True
                actual = 'sha256:' + self._hash.hexdigest()
                if self._diff_id is not None and actual != self._diff_id:
                    raise OciError('digest mismatch for %s: expected diff_id %s, got %s (%d bytes uncompressed)' % (
                        self._what, self._diff_id, actual, self.size))
                return self._comp.flush()
            self._hash.update(raw)
            self.size += len(raw)
            out = self._comp.compress(raw)
            if out:
                return out
        return b''

    def close(self):
        self._src.close()


class _Decompressor(object):
    """Incremental gzip (several members), zstd (several frames) or no decompression."""

    def __init__(self, kind):
        self.kind = kind
        self._new()

    def _new(self):
        if self.kind == 'gzip':
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.kind == 'zstd':
            self._obj = zstandard().ZstdDecompressor().decompressobj()
        else:
            self._obj = None

    def feed(self, data):
        if self._obj is None:
            return data
        out = []
        while data:
            out.append(self._obj.decompress(data))
            data = self._obj.unused_data if self._obj.eof else b''  # the next gzip member or zstd frame
            if data:
                self._new()
        return b''.join(out)

    def complete(self):
        return self._obj is None or self._obj.eof


def _errors():
    found = (zlib.error, EOFError)
    try:
        import zstandard as module
        found += (module.ZstdError,)
    except ImportError:
        pass
    return found


class VerifyingReader(object):
    """Passes ``src`` through unchanged while decompressing it; at its end the stream must be complete and
    decompress to ``diff_id``. Errors (a corrupt or truncated stream, another diff_id) raise OciError
    before the last bytes are handed out.

    The compression is told by the stream's magic bytes, not by its media type, as containerd does when it
    unpacks (registries hold plain layers labelled gzip, which containerd reads).
    """

    def __init__(self, src, diff_id, what):
        self._src, self._what, self._diff_id = src, what, diff_id
        self._dec = None
        self._hash = hashlib.sha256()
        self._done = False
        self._errors = _errors()

    def read(self, size=-1):
        if self._done:
            return b''
        data = self._src.read(BUF_SIZE)
        if self._dec is None:
            self._dec = _Decompressor(layer_compression(layer_media_type(data)))
        try:
            if data:
                self._hash.update(self._dec.feed(data))
                return data
        except self._errors as exc:
            raise OciError('%s is not a valid %s stream: %s' % (self._what, self._dec.kind, exc))
        self._done = True
        if not self._dec.complete():
            raise OciError('%s is not a valid %s stream: it ends before its end mark (truncated)' % (
                self._what, self._dec.kind))
        actual = 'sha256:' + self._hash.hexdigest()
        if actual != self._diff_id:
            raise OciError('digest mismatch for %s: it decompresses to %s, its config says diff_id %s' % (
                self._what, actual, self._diff_id))
        return b''

    def close(self):
        self._src.close()


class LayerWriter(object):
    """Puts layers into ``store``: plain ones compressed with ``compression``, compressed ones checked.

    ``reused`` counts layers found through the diff_id map (not read, not compressed again).
    """

    def __init__(self, store, compression='none'):
        self.store = store
        self.compression = check_compression(compression)
        self.reused = 0
        self._map = None

    def _layer_map(self):
        """{(diff_id, media type): descriptor} of the annotated layers of the store's manifests."""
        if self._map is None:
            self._map = {}
            seen = set()
            todo = [self.store.entry(ref) for ref in sorted(self.store.refs())]
            while todo:
                desc = todo.pop()
                if not isinstance(desc, dict) or desc.get('digest') in seen:
                    continue
                seen.add(desc.get('digest'))
                if desc.get('mediaType') in INDEX_TYPES:
                    todo.extend(self.store.children(desc))
                elif desc.get('mediaType') in MANIFEST_TYPES:
                    manifest = self.store.read_json(desc['digest'])
                    layers = manifest.get('layers') or []
                    config = self.store.read_json(manifest['config']['digest'])
                    diff_ids = (config.get('rootfs') or {}).get('diff_ids') or []
                    for layer, diff_id in zip(layers, diff_ids if len(diff_ids) == len(layers) else []):
                        # trusted only when the config agrees: a manifest kept as it arrived may carry any annotation
                        if (layer.get('annotations') or {}).get(DIFF_ID_ANNOTATION) == diff_id:
                            self._map.setdefault((diff_id, layer.get('mediaType')), layer)
        return self._map

    def known(self, diff_id):
        """The stored descriptor of the uncompressed layer ``diff_id`` in this writer's compression, or None."""
        if self.compression == 'none':
            return None
        desc = self._layer_map().get((diff_id, MEDIA_TYPE[self.compression]))
        if desc is not None and self.store.has_blob(desc['digest'], desc['size']):
            return dict(desc)
        return None

    def put_plain(self, opener, diff_id, size, what):
        """Store an uncompressed layer (``opener()`` gives its tar); returns its descriptor in the manifest."""
        if self.compression == 'none':
            digest, count = self.store.put_blob(opener, diff_id, size, what)
            return descriptor(MT_OCI_LAYER, digest, count)
        found = self.known(diff_id)
        if found is not None:
            self.reused += 1
            self.store.bytes_skipped += found['size']
            return found
        digest, count = self.store.put_blob(
            lambda: CompressingReader(opener(), self.compression, diff_id, what), None, None, what)
        desc = descriptor(MEDIA_TYPE[self.compression], digest, count)
        desc['annotations'] = {DIFF_ID_ANNOTATION: diff_id}
        self._layer_map()[(diff_id, desc['mediaType'])] = dict(desc)
        return desc

    def put_kept(self, opener, desc, diff_id, what):
        """Store a layer as it is (digest and size of ``desc``); a gzip or zstd one is checked against
        ``diff_id`` on the way in (when known). Returns (digest, size)."""
        def checked():
            return VerifyingReader(opener(), diff_id, what)
        verify = diff_id and layer_compression(desc.get('mediaType')) is not None
        return self.store.put_blob(checked if verify else opener, desc['digest'], desc.get('size'), what)
