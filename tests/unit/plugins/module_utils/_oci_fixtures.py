# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build small image archives in code (docker-archive legacy / Docker 25+, oci-archive)."""

import gzip
import hashlib
import io
import json
import os
import tarfile

OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar'
GOARCH = {'x86_64': 'amd64', 'aarch64': 'arm64'}


def digest(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def hexof(data):
    return hashlib.sha256(data).hexdigest()


def dumps(obj):
    return json.dumps(obj, sort_keys=True).encode('utf-8')


def tar_bytes(entries, compress=False):
    """Tar (optionally gzip) of entries: (name, bytes) or dicts {name, data, type, linkname, size}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            add_entry(tar, entry)
    data = buf.getvalue()
    return gzip_bytes(data) if compress else data


def add_entry(tar, entry):
    if isinstance(entry, tuple):
        entry = {'name': entry[0], 'data': entry[1]}
    info = tarfile.TarInfo(entry['name'])
    info.type = entry.get('type', tarfile.REGTYPE)
    info.linkname = entry.get('linkname', '')
    info.mode = entry.get('mode', 0o755 if info.type == tarfile.DIRTYPE else 0o644)
    data = entry.get('data', b'')
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def write_tar(path, entries, compress=False):
    with open(str(path), 'wb') as fh:
        fh.write(tar_bytes(entries, compress))
    return str(path)


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode='wb', mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def layer(files):
    """An uncompressed layer tar of {path: bytes}."""
    return tar_bytes(sorted(files.items()))


def config(arch, diff_ids, os_name='linux', variant=None, goarch=None):
    doc = {'architecture': goarch or GOARCH[arch], 'os': os_name, 'config': {'Cmd': ['/app']},
           'rootfs': {'type': 'layers', 'diff_ids': list(diff_ids)}}
    if variant:
        doc['variant'] = variant
    return dumps(doc)


class Image(object):
    """One single-platform image: layers (tar bytes, maybe gzip) + config."""

    def __init__(self, arch='x86_64', layers=None, tags=('demo/web:1.0',), goarch=None, variant=None):
        self.arch = arch
        self.layers = list(layers if layers is not None else [layer({'app': b'app ' + arch.encode()})])
        self.tags = list(tags)
        diff_ids = [digest(_plain(data)) for data in self.layers]
        self.config = config(arch, diff_ids, goarch=goarch, variant=variant)

    def manifest(self):
        return dumps({'schemaVersion': 2, 'mediaType': OCI_MANIFEST,
                      'config': {'mediaType': OCI_CONFIG, 'digest': digest(self.config), 'size': len(self.config)},
                      'layers': [{'mediaType': OCI_LAYER + ('+gzip' if data[:2] == b'\x1f\x8b' else ''),
                                  'digest': digest(data), 'size': len(data)} for data in self.layers]})


def _plain(data):
    return gzip.decompress(data) if data[:2] == b'\x1f\x8b' else data


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
        index.append({'mediaType': OCI_MANIFEST, 'digest': digest(image.manifest()),
                      'size': len(image.manifest()),
                      'annotations': {'io.containerd.image.name': 'docker.io/' + image.tags[0]}})
    entries = [{'name': 'blobs', 'type': tarfile.DIRTYPE}, {'name': 'blobs/sha256', 'type': tarfile.DIRTYPE}]
    entries += sorted(blobs.items())
    entries += [('index.json', dumps({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': index})),
                ('manifest.json', dumps(manifest)), ('oci-layout', b'{"imageLayoutVersion": "1.0.0"}'),
                ('repositories', b'{}')]
    return entries


def oci_entries(images, ref_name='1.0', multi=None):
    """Members of an oci-archive; several images (or multi=True) go into one image index."""
    multi = len(images) > 1 if multi is None else multi
    blobs = {}
    descs = []
    for image in images:
        for data in image.layers + [image.config, image.manifest()]:
            blobs['blobs/sha256/' + hexof(data)] = data
        platform = {'os': 'linux', 'architecture': json.loads(image.config)['architecture']}
        descs.append({'mediaType': OCI_MANIFEST, 'digest': digest(image.manifest()),
                      'size': len(image.manifest()), 'platform': platform})
    if multi:
        index_doc = dumps({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': descs})
        blobs['blobs/sha256/' + hexof(index_doc)] = index_doc
        top = {'mediaType': OCI_INDEX, 'digest': digest(index_doc), 'size': len(index_doc)}
    else:
        top = dict(descs[0])
        del top['platform']
    top['annotations'] = {'org.opencontainers.image.ref.name': ref_name}
    entries = [('oci-layout', b'{"imageLayoutVersion": "1.0.0"}')] + sorted(blobs.items())
    entries.append(('index.json', dumps({'schemaVersion': 2, 'manifests': [top]})))
    return entries


def store_files(store_dir):
    """Every file under the store (relative paths), to prove a store unchanged."""
    found = []
    for root, dirs, files in os.walk(str(store_dir)):
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), str(store_dir)))
    return sorted(found)
