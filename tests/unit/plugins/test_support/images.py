# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one image builder of the tests: layers, configs and manifests built in code, written out as

* a docker-archive (``docker save``: legacy layout, or Docker 25+ with blobs/sha256),
* an oci-archive (one image, or several platforms under one index),
* an OCI image store (Ferry's ImageStore: one image per ref, or per-platform manifests),
* pushes to a registry over the distribution API.

No pytest here: tests/support/testbundle.py (a script) builds the test bundle's images with it.
"""

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
from urllib.request import Request, urlopen

# The only module_utils import of this file (the store writer below).
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore

OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar'
OCI_LAYER_GZIP = OCI_LAYER + '+gzip'
OCI_LAYER_ZSTD = OCI_LAYER + '+zstd'
REF_NAME = 'org.opencontainers.image.ref.name'
CONTAINERD_NAME = 'io.containerd.image.name'
OCI_LAYOUT = b'{"imageLayoutVersion": "1.0.0"}'
GOARCH = {'x86_64': 'amd64', 'aarch64': 'arm64'}


# ---------------------------------------------------------------- bytes

def digest(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def hexof(data):
    return hashlib.sha256(data).hexdigest()


def dumps(obj):
    """Key-sorted JSON bytes with the default separators."""
    return json.dumps(obj, sort_keys=True).encode('utf-8')


def compact(obj):
    """Key-sorted, compact JSON bytes (as Ferry's canonical_json writes them)."""
    return json.dumps(obj, sort_keys=True, separators=(',', ':')).encode('utf-8')


def gzip_bytes(data, level=9):
    buf = io.BytesIO()
    with gzip.GzipFile(filename='', fileobj=buf, mode='wb', compresslevel=level, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def plain(data):
    """A layer's uncompressed bytes (gzip and zstd are recognised by their magic)."""
    if data[:4] == b'\x28\xb5\x2f\xfd':
        import zstandard  # only tests that build zstd layers need it
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return gzip.decompress(data) if data[:2] == b'\x1f\x8b' else data


def layer_type(data):
    """The OCI media type of a layer's bytes, by their magic."""
    if data[:4] == b'\x28\xb5\x2f\xfd':
        return OCI_LAYER_ZSTD
    return OCI_LAYER_GZIP if data[:2] == b'\x1f\x8b' else OCI_LAYER


# ---------------------------------------------------------------- tars

def add_entry(tar, entry, mtime=0, owner=None):
    """entry: (name, bytes) or a dict {name, data, type, linkname, mode, mtime}; ``owner`` names uname/gname."""
    if isinstance(entry, tuple):
        entry = {'name': entry[0], 'data': entry[1]}
    info = tarfile.TarInfo(entry['name'])
    info.type = entry.get('type', tarfile.REGTYPE)
    info.linkname = entry.get('linkname', '')
    info.mode = entry.get('mode', 0o755 if info.type == tarfile.DIRTYPE else 0o644)
    info.mtime = int(entry.get('mtime', mtime))
    if owner:
        info.uname = info.gname = owner
    data = entry.get('data', b'')
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def tar_bytes(entries, compress=False, tar_format=tarfile.PAX_FORMAT, owner=None):
    """Tar (optionally gzip) of ``entries`` in the given order (see add_entry)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tar_format) as tar:
        for entry in entries:
            add_entry(tar, entry, owner=owner)
    data = buf.getvalue()
    return gzip_bytes(data) if compress else data


def write_tar(path, entries, compress=False):
    with open(str(path), 'wb') as fh:
        fh.write(tar_bytes(entries, compress))
    return str(path)


# ---------------------------------------------------------------- layers and images

def layer(files, mode=0o644):
    """An uncompressed layer tar of {path: bytes}."""
    return tar_bytes([{'name': name, 'data': data, 'mode': mode} for name, data in sorted(files.items())])


def layer_pair(files):
    """(uncompressed tar, gzip) of a layer holding {path: bytes} (files mode 0755)."""
    raw = layer(files, mode=0o755)
    return raw, gzip_bytes(raw, level=1)


def random_layer(name, size):
    return layer_pair({name: os.urandom(size)})


class Image(object):
    """One single-platform image: layers (tar bytes, maybe gzip) + config.

    ``config_extra`` adds keys to the config document, ``cmd`` is its Cmd, ``encode`` writes the
    config and manifest documents (``dumps`` or ``compact``); ``config`` (a dict) replaces the whole
    config document.
    """

    def __init__(self, arch='x86_64', layers=None, tags=('demo/web:1.0',), goarch=None, variant=None,
                 cmd=('/app',), config_extra=None, encode=dumps, config=None):
        self.arch = arch
        self.goarch = goarch or GOARCH[arch]
        self.variant = variant
        self.layers = list(layers if layers is not None else [layer({'app': b'app ' + arch.encode()})])
        self.tags = list(tags)
        self.encode = encode
        doc = {'architecture': self.goarch, 'os': 'linux', 'config': {'Cmd': list(cmd)},
               'rootfs': {'type': 'layers', 'diff_ids': [digest(plain(data)) for data in self.layers]}}
        if variant:
            doc['variant'] = variant
        doc.update(config_extra or {})
        if config_extra and 'config' in config_extra:
            doc['config'] = dict(config_extra['config'], Cmd=list(cmd))
        self.config = encode(config if config is not None else doc)

    def manifest(self):
        return self.encode({
            'schemaVersion': 2, 'mediaType': OCI_MANIFEST,
            'config': {'mediaType': OCI_CONFIG, 'digest': digest(self.config), 'size': len(self.config)},
            'layers': [{'mediaType': layer_type(data), 'digest': digest(data), 'size': len(data)}
                       for data in self.layers]})

    def platform(self):
        found = {'os': 'linux', 'architecture': self.goarch}
        if self.variant:
            found['variant'] = self.variant
        return found

    def descriptor(self, platform=True):
        found = {'mediaType': OCI_MANIFEST, 'digest': digest(self.manifest()), 'size': len(self.manifest())}
        if platform:
            found['platform'] = self.platform()
        return found

    def blobs(self):
        """{digest: bytes} of its layers, config and manifest."""
        return dict((digest(data), data) for data in self.layers + [self.config, self.manifest()])


def index_of(images, encode=dumps):
    """An image index (bytes) over single-platform images."""
    return encode({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': [i.descriptor() for i in images]})


# ---------------------------------------------------------------- docker-archive

def docker_legacy_entries(images):
    """Members of a legacy ``docker save`` tar (``<id>/layer.tar``, ``<config hex>.json``)."""
    entries, manifest, seen = [], [], set()
    for image in images:
        layer_names = []
        for data in image.layers:
            layer_id = hexof(b'id' + data)
            name = layer_id + '/layer.tar'
            if layer_id not in seen:
                seen.add(layer_id)
                entries += [{'name': layer_id, 'type': tarfile.DIRTYPE}, (layer_id + '/VERSION', b'1.0'),
                            (layer_id + '/json', b'{}'), (name, data)]
            layer_names.append(name)
        config_name = hexof(image.config) + '.json'
        entries.append((config_name, image.config))
        manifest.append({'Config': config_name, 'RepoTags': image.tags, 'Layers': layer_names})
    entries += [('manifest.json', dumps(manifest)), ('repositories', b'{}')]
    return entries


def docker_new_entries(images):
    """Members of a Docker 25+ ``docker save`` tar (manifest.json pointing into blobs/sha256)."""
    blobs, manifest, index = {}, [], []
    for image in images:
        for data in image.layers + [image.config, image.manifest()]:
            blobs['blobs/sha256/' + hexof(data)] = data
        manifest.append({'Config': 'blobs/sha256/' + hexof(image.config), 'RepoTags': image.tags,
                         'Layers': ['blobs/sha256/' + hexof(data) for data in image.layers]})
        index.append(dict(image.descriptor(platform=False),
                          annotations={CONTAINERD_NAME: 'docker.io/' + image.tags[0]}))
    entries = [{'name': 'blobs', 'type': tarfile.DIRTYPE}, {'name': 'blobs/sha256', 'type': tarfile.DIRTYPE}]
    entries += sorted(blobs.items())
    entries += [('index.json', dumps({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': index})),
                ('manifest.json', dumps(manifest)), ('oci-layout', OCI_LAYOUT), ('repositories', b'{}')]
    return entries


# ---------------------------------------------------------------- oci-archive

def oci_entries(images, ref_name='1.0', multi=None):
    """Members of an oci-archive; several images (or multi=True) go into one image index."""
    multi = len(images) > 1 if multi is None else multi
    blobs = {}
    for image in images:
        for data in image.layers + [image.config, image.manifest()]:
            blobs['blobs/sha256/' + hexof(data)] = data
    if multi:
        index_doc = index_of(images)
        blobs['blobs/sha256/' + hexof(index_doc)] = index_doc
        top = {'mediaType': OCI_INDEX, 'digest': digest(index_doc), 'size': len(index_doc)}
    else:
        top = images[0].descriptor(platform=False)
    top['annotations'] = {REF_NAME: ref_name}
    entries = [('oci-layout', OCI_LAYOUT)] + sorted(blobs.items())
    entries.append(('index.json', dumps({'schemaVersion': 2, 'manifests': [top]})))
    return entries


def oci_archive_bytes(images, ref, mtime=0, owner='root'):
    """A reproducible oci-archive of one multi-platform image (compact JSON, GNU tar, directory entries,
    owner root, fixed mtime; both ref annotations), as the test bundle carries."""
    blobs = {}
    for image in images:
        blobs.update(image.blobs())
    index = index_of(images, encode=compact)
    blobs[digest(index)] = index
    top = {'mediaType': OCI_INDEX, 'digest': digest(index), 'size': len(index),
           'annotations': {REF_NAME: ref, CONTAINERD_NAME: ref}}
    entries = [{'name': 'blobs/', 'type': tarfile.DIRTYPE, 'mtime': mtime},
               {'name': 'blobs/sha256/', 'type': tarfile.DIRTYPE, 'mtime': mtime}]
    entries += [{'name': 'blobs/sha256/' + d.split(':', 1)[1], 'data': blobs[d], 'mtime': mtime} for d in sorted(blobs)]
    entries += [{'name': 'index.json', 'data': compact({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': [top]}),
                 'mtime': mtime},
                {'name': 'oci-layout', 'data': compact({'imageLayoutVersion': '1.0.0'}), 'mtime': mtime}]
    return tar_bytes(entries, tar_format=tarfile.GNU_FORMAT, owner=owner), digest(index)


# ---------------------------------------------------------------- OCI image layout / store

def write_layout(directory, image, ref):
    """A one-image OCI layout written by hand (no ImageStore) under ``directory``; returns the manifest digest."""
    directory = str(directory)
    os.makedirs(os.path.join(directory, 'blobs', 'sha256'), exist_ok=True)
    for dig, data in image.blobs().items():
        with open(os.path.join(directory, 'blobs', 'sha256', dig.split(':', 1)[1]), 'wb') as fh:
            fh.write(data)
    desc = image.descriptor(platform=False)
    desc['annotations'] = {REF_NAME: ref}
    with open(os.path.join(directory, 'oci-layout'), 'wb') as fh:
        fh.write(OCI_LAYOUT)
    with open(os.path.join(directory, 'index.json'), 'w') as fh:
        fh.write(json.dumps({'schemaVersion': 2, 'manifests': [desc]}))
    return desc['digest']


def put_image(store, image):
    """Store one Image (layers, config, manifest); returns its descriptor (with platform)."""
    for data in image.layers:
        store.put_bytes(data)
    store.put_bytes(image.config)
    dig, size = store.put_bytes(image.manifest())
    return dict(image.descriptor(), digest=dig, size=size)


def add_manifest(store, arch, layers, variant=None):
    """Store one image of (raw, gzip) layer pairs for the Go arch ``arch``; returns its descriptor."""
    image = Image(arch, goarch=arch, layers=[gz for dummy, gz in layers], variant=variant, cmd=('/bin/sh',), encode=compact)
    return put_image(store, image)


def build_store(path, images):
    """An OCI layout at ``path``: images = {ref: [(goarch, [layer pair, ...], variant), ...]}; returns the ImageStore."""
    store = ImageStore(str(path))
    store.init()
    for ref, platforms in images.items():
        store.set_ref(ref, [add_manifest(store, arch, layers, variant) for arch, layers, variant in platforms])
    return store


def store_with(path, images):
    """An OCI layout at ``path``: images = {ref: [Image, ...]} (one Image: a plain manifest)."""
    store = ImageStore(str(path))
    store.init()
    for ref, found in images.items():
        store.set_ref(ref, [put_image(store, image) for image in found])
    return store


def store_files(store_dir):
    """Every file under the store (relative paths), to prove a store unchanged."""
    found = []
    for root, dummy, files in os.walk(str(store_dir)):
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), str(store_dir)))
    return sorted(found)


def manifest_of(store, ref, arch):
    top = store.entry(ref)
    if top['mediaType'] != OCI_INDEX:
        return store.read_json(top['digest'])
    for desc in store.read_json(top['digest'])['manifests']:
        if desc['platform']['architecture'] == arch:
            return store.read_json(desc['digest'])
    raise KeyError(arch)


def platform_blobs(store, ref, arch):
    """{digest: size} of the blobs ``ref`` needs for ``arch`` (computed here independently of platform_plan)."""
    top = store.entry(ref)
    found = {}
    manifests = [top]
    if top['mediaType'] == OCI_INDEX:
        found[top['digest']] = top['size']
        manifests = [m for m in store.read_json(top['digest'])['manifests'] if m['platform']['architecture'] == arch]
    for desc in manifests:
        found[desc['digest']] = desc['size']
        doc = store.read_json(desc['digest'])
        for child in [doc['config']] + doc['layers']:
            found[child['digest']] = child['size']
    return found


def corrupt(store, dig, offset=100):
    """Flip one byte of a blob of the store (size unchanged)."""
    path = store.blob_path(dig)
    with open(path, 'r+b') as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xff]))


# ---------------------------------------------------------------- registry push (distribution API)

def _call(method, url, data=None, content_type=None, auth=None):
    req = Request(url, data=data, method=method)
    if content_type:
        req.add_header('Content-Type', content_type)
    if auth:
        req.add_header('Authorization', 'Basic ' + base64.b64encode(('%s:%s' % auth).encode()).decode())
    return urlopen(req, timeout=30)


def push_blob(host, repo, data, auth=None):
    resp = _call('POST', 'http://%s/v2/%s/blobs/uploads/' % (host, repo), b'', auth=auth)
    assert resp.status == 202
    location = resp.headers['Location']
    if location.startswith('/'):
        location = 'http://' + host + location
    sep = '&' if '?' in location else '?'
    resp = _call('PUT', location + sep + 'digest=' + digest(data), data, 'application/octet-stream', auth=auth)
    assert resp.status == 201


def push_manifest(host, repo, reference, data, media_type, auth=None):
    resp = _call('PUT', 'http://%s/v2/%s/manifests/%s' % (host, repo, reference), data, media_type, auth=auth)
    assert resp.status == 201
    assert resp.headers['Docker-Content-Digest'] == digest(data)


def push_image(host, repo, image, auth=None, tag=None):
    """Push an Image's blobs and manifest (under ``tag``, else its digest)."""
    for blob in image.layers + [image.config]:
        push_blob(host, repo, blob, auth)
    push_manifest(host, repo, tag or digest(image.manifest()), image.manifest(), OCI_MANIFEST, auth)
