# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying one image from a source (an archive or a registry) into the store, only the wanted platforms."""

from ansible_collections.ferry.airgap.plugins.module_utils._digest import canonical_json
from ansible_collections.ferry.airgap.plugins.module_utils._platform import arch_platform_key, platform_arch, platform_key
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (
    INDEX_TYPES, MANIFEST_TYPES, MT_DOCKER_MANIFEST, MT_OCI_CONFIG, MT_OCI_MANIFEST, OciError, check_platform,
    PLAIN_LAYER_TYPES, config_platform, descriptor, loads)
from ansible_collections.ferry.airgap.plugins.module_utils._oci.compress import LayerWriter


def _select_platforms(source, top, ref, arches):
    """Platform manifest descriptors of ``top`` for ``arches`` (errors name ref and arch)."""
    if top['mediaType'] not in INDEX_TYPES:
        return [top]
    doc = loads(source.read_doc(top), 'image index %s of %s' % (top['digest'], ref))
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


def copy_image(store, source, top, ref, arches, strict_single=False, layers=None, compress_plain=True):
    """Copy the image ``top`` of ``source`` into ``store`` for ``arches``.

    Returns the platform manifest descriptors (for ImageStore.set_ref). Config
    and platforms are checked before any blob is written; layers are written
    before their manifest. ``layers`` (a compress.LayerWriter; default: store
    every layer as it is) writes the layers: with ``compress_plain``, plain tar
    layers are compressed and their manifest is rewritten (an OCI manifest with
    the compressed descriptors); compressed layers are kept byte for byte (and
    checked against the config's diff_ids), so a manifest without plain layers
    keeps its digest.
    """
    writer = layers or LayerWriter(store)
    plans = []
    for desc in _select_platforms(source, top, ref, arches):
        data = source.read_doc(desc)
        manifest = loads(data, 'manifest %s of %s' % (desc['digest'], ref))
        media_type = desc.get('mediaType') or manifest.get('mediaType')
        if media_type not in MANIFEST_TYPES or 'config' not in manifest:
            raise OciError('%s (%s): manifest %s has unsupported media type %s' % (
                ref, source.name, desc['digest'], media_type))
        config_bytes = source.read_doc(manifest['config'])
        config = loads(config_bytes, 'config of %s' % ref)
        platform = desc.get('platform') or config_platform(config)
        if strict_single and len(arches) > 1 and top['mediaType'] not in INDEX_TYPES:
            missing = [a for a in arches if a != platform_arch(platform)]
            raise OciError('%s (%s) is a single-platform image (%s); no platform for arch %s' % (
                ref, source.name, platform_key(platform), ', '.join(missing)))
        check_platform(platform, arches, ref, source.name)
        plans.append((desc, data, manifest, config_bytes, config, platform))
    result = []
    for desc, data, manifest, config_bytes, config, platform in plans:
        store.put_bytes(config_bytes, manifest['config']['digest'], 'config of %s (%s)' % (ref, source.name))
        data, media_type = _put_layers(writer, source, manifest, config, data, ref, compress_plain)
        digest, size = store.put_bytes(data, None if media_type else desc['digest'],
                                       'manifest of %s (%s)' % (ref, source.name))
        result.append(descriptor(media_type or desc.get('mediaType') or manifest.get('mediaType'), digest, size,
                                 platform))
    return result


def _diff_ids(config, layers):
    """The config's diff_ids when they pair one to one with ``layers``, else Nones (nothing to check against)."""
    diff_ids = (config.get('rootfs') or {}).get('diff_ids') if isinstance(config, dict) else None
    if isinstance(diff_ids, list) and len(diff_ids) == len(layers):
        return diff_ids
    return [None] * len(layers)


def _put_layers(writer, source, manifest, config, data, ref, compress_plain):
    """Store the layers of ``manifest``; returns (manifest bytes, None) when it is kept, or
    (rewritten manifest bytes, its media type) when plain layers were compressed."""
    layers = list(manifest.get('layers') or [])
    diff_ids = _diff_ids(config, layers)
    diff_of = dict((layer['digest'], diff_id) for layer, diff_id in zip(layers, diff_ids))
    compress = compress_plain and writer.compression != 'none'
    stored, changed = {}, False
    for layer in source.order(layers):
        if layer['digest'] in stored:
            continue
        what = 'layer %s of %s (%s)' % (layer['digest'], ref, source.name)
        if compress and layer.get('mediaType') in PLAIN_LAYER_TYPES:
            diff_id = diff_of.get(layer['digest'])
            if diff_id is not None and diff_id != layer['digest']:
                raise OciError('digest mismatch for %s: an uncompressed layer is its own diff_id, but the config says %s'
                               % (what, diff_id))
            stored[layer['digest']] = writer.put_plain(_opener(source, layer), layer['digest'], layer.get('size'), what)
            changed = True
        else:
            writer.put_kept(_opener(source, layer), layer, diff_of.get(layer['digest']), what)
            stored[layer['digest']] = layer
    if not changed:
        return data, None
    rewritten = dict(manifest, mediaType=MT_OCI_MANIFEST, layers=[stored[layer['digest']] for layer in layers])
    if manifest.get('mediaType') == MT_DOCKER_MANIFEST or rewritten['config'].get('mediaType') != MT_OCI_CONFIG:
        rewritten['config'] = dict(rewritten['config'], mediaType=MT_OCI_CONFIG)
    return canonical_json(rewritten), MT_OCI_MANIFEST


def _opener(source, desc):
    return lambda: source.open_blob(desc)
