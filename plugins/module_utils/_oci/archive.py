# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Images from docker-archive (``docker save``, legacy and Docker 25+) and oci-archive tars."""

import contextlib
import os
import posixpath
import re

from ansible_collections.ferry.airgap.plugins.module_utils._digest import canonical_json
from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES
from ansible_collections.ferry.airgap.plugins.module_utils._safetar import iter_members, member_name, member_reader, open_tar
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (
    CONTAINERD_ANNOTATION, MAX_DOCUMENT, MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST, REF_ANNOTATION, OciError,
    Peeked, check_digest, check_platform, config_platform, descriptor, doc_media_type, hex_of, layer_media_type, loads)
from ansible_collections.ferry.airgap.plugins.module_utils._oci.compress import LayerWriter
from ansible_collections.ferry.airgap.plugins.module_utils._oci.copy import copy_image


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
        return _regular_member(self.members, 'blobs/sha256/' + hex_of(desc['digest']), self.path)

    def read_doc(self, desc):
        data = _read_member(self.tar, self.members, 'blobs/sha256/' + hex_of(desc['digest']), self.path)
        return check_digest(data, desc['digest'], "blob '%s' of %s" % (desc['digest'], self.name))

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


def import_oci_archive(store, path, ref, arches=ARCHES, layers=None):
    """Copy image ``ref`` of an oci-archive tar into ``store``; returns platform manifest descriptors.

    ``layers`` (a compress.LayerWriter, default: no compression) stores the layers: plain tar layers
    compressed (their manifests rewritten), compressed ones kept byte for byte.
    """
    with _open_archive(path) as (tar, members):
        layout = loads(_read_member(tar, members, 'oci-layout', path), "oci-layout of '%s'" % path)
        if not isinstance(layout, dict) or 'imageLayoutVersion' not in layout:
            raise OciError("archive '%s': oci-layout has no imageLayoutVersion" % path)
        index = loads(_read_member(tar, members, 'index.json', path), "index.json of '%s'" % path)
        entries = index.get('manifests') or []
        if not entries:
            raise OciError("archive '%s': index.json lists no image" % path)
        source = _ArchiveSource(tar, members, path)
        top = dict(_select_one(entries, _annotation_names, ref, path))
        if not top.get('mediaType'):
            top['mediaType'] = doc_media_type(loads(source.read_doc(top), 'image %s of %s' % (top['digest'], path)))
        return copy_image(store, source, top, ref, list(arches), layers=layers)


def _annotation_names(desc):
    notes = desc.get('annotations') or {}
    return [n for n in (notes.get(REF_ANNOTATION), notes.get(CONTAINERD_ANNOTATION)) if n]


def _name_digest(name):
    """Digest implied by a blob-like member name (blobs/sha256/<hex> or <hex>.json)."""
    match = re.match(r'^(?:.*/)?blobs/sha256/([0-9a-f]{64})$', name) or re.match(r'^([0-9a-f]{64})\.json$', name)
    return 'sha256:' + match.group(1) if match else None


def import_docker_archive(store, path, ref, arches=ARCHES, layers=None):
    """Copy image ``ref`` of a ``docker save`` tar into ``store`` as an OCI image manifest.

    Handles the legacy layout (``<id>/layer.tar``) and Docker 25+ (``blobs/sha256``).
    ``layers``: a compress.LayerWriter (default: layers stored as they are).
    Returns a one-element list of platform manifest descriptors.
    """
    with _open_archive(path) as (tar, members):
        entries = loads(_read_member(tar, members, 'manifest.json', path), "manifest.json of '%s'" % path)
        if not isinstance(entries, list) or not entries:
            raise OciError("archive '%s': manifest.json lists no image" % path)
        entry = _select_one(entries, lambda e: e.get('RepoTags') or [], ref, path)
        config_bytes = _read_member(tar, members, entry['Config'], path)
        config_digest = _name_digest(posixpath.normpath(entry['Config']))
        if config_digest:
            check_digest(config_bytes, config_digest, "config '%s' of archive '%s'" % (entry['Config'], path))
        config = loads(config_bytes, "config '%s' of archive '%s'" % (entry['Config'], path))
        platform = config_platform(config)
        check_platform(platform, list(arches), ref, "docker-archive '%s'" % path)
        layer_names = list(entry.get('Layers') or [])
        diff_ids = list((config.get('rootfs') or {}).get('diff_ids') or [])
        if len(diff_ids) != len(layer_names):
            raise OciError("archive '%s': %s lists %d layers but its config has %d diff_ids" % (
                path, ref, len(layer_names), len(diff_ids)))
        layers = _put_docker_layers(layers or LayerWriter(store), tar, members, path, layer_names, diff_ids)
        digest, size = store.put_bytes(config_bytes, what="config of %s (archive '%s')" % (ref, path))
        manifest = {'schemaVersion': 2, 'mediaType': MT_OCI_MANIFEST,
                    'config': descriptor(MT_OCI_CONFIG, digest, size), 'layers': layers}
        digest, size = store.put_bytes(canonical_json(manifest), what='manifest of %s' % ref)
        return [descriptor(MT_OCI_MANIFEST, digest, size, platform)]


def _put_docker_layers(writer, tar, members, path, names, diff_ids):
    """Store the layers (read in archive order) through ``writer`` and return their descriptors in image order.

    A layer the writer already holds (by diff_id, in its compression) is not read at all.
    """
    resolved = [_regular_member(members, name, path) for name in names]
    layers = [None] * len(names)
    for i in sorted(range(len(names)), key=lambda n: resolved[n].offset_data):
        known = writer.known(diff_ids[i])
        if known is not None:
            writer.reused += 1
            writer.store.bytes_skipped += known['size']
            layers[i] = known
            continue
        reader = member_reader(tar, resolved[i], path)
        head = reader.read(8)
        media_type = layer_media_type(head)
        what = "layer '%s' of archive '%s'" % (names[i], path)
        expected = _name_digest(posixpath.normpath(names[i]))
        peeked = Peeked(head, reader)
        try:
            if media_type == MT_OCI_LAYER:
                if expected and expected != diff_ids[i]:
                    raise OciError('digest mismatch for %s: expected diff_id %s, got %s' % (what, diff_ids[i], expected))
                layers[i] = writer.put_plain(lambda: peeked, diff_ids[i], resolved[i].size, what)
            else:
                digest, size = writer.put_kept(lambda: peeked, descriptor(media_type, expected, resolved[i].size),
                                               diff_ids[i], what)
                layers[i] = descriptor(media_type, digest, size)
        finally:
            peeked.close()
    return layers
