# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying one image from a source (an archive or a registry) into the store, only the wanted platforms."""

from ansible_collections.ferry.airgap.plugins.module_utils._platform import arch_platform_key, platform_arch, platform_key
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (
    INDEX_TYPES, MANIFEST_TYPES, MT_OCI_MANIFEST, OciError, check_platform, config_platform, descriptor, loads)


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


def copy_image(store, source, top, ref, arches, strict_single=False):
    """Copy the image ``top`` of ``source`` into ``store`` for ``arches``.

    Returns the platform manifest descriptors (for ImageStore.set_ref). Config
    and platforms are checked before any blob is written; layers are written
    before their manifest.
    """
    plans = []
    for desc in _select_platforms(source, top, ref, arches):
        data = source.read_doc(desc)
        manifest = loads(data, 'manifest %s of %s' % (desc['digest'], ref))
        media_type = desc.get('mediaType') or manifest.get('mediaType')
        if media_type not in MANIFEST_TYPES or 'config' not in manifest:
            raise OciError('%s (%s): manifest %s has unsupported media type %s' % (
                ref, source.name, desc['digest'], media_type))
        config_bytes = source.read_doc(manifest['config'])
        platform = desc.get('platform') or config_platform(loads(config_bytes, 'config of %s' % ref))
        if strict_single and len(arches) > 1 and top['mediaType'] not in INDEX_TYPES:
            missing = [a for a in arches if a != platform_arch(platform)]
            raise OciError('%s (%s) is a single-platform image (%s); no platform for arch %s' % (
                ref, source.name, platform_key(platform), ', '.join(missing)))
        check_platform(platform, arches, ref, source.name)
        plans.append((desc, data, manifest, config_bytes, platform))
    result = []
    for desc, data, manifest, config_bytes, platform in plans:
        store.put_bytes(config_bytes, manifest['config']['digest'], 'config of %s (%s)' % (ref, source.name))
        for layer in source.order(manifest.get('layers') or []):
            store.put_blob(_opener(source, layer), layer['digest'], layer.get('size'),
                           'layer %s of %s (%s)' % (layer['digest'], ref, source.name))
        digest, size = store.put_bytes(data, desc['digest'], 'manifest of %s (%s)' % (ref, source.name))
        result.append(descriptor(desc.get('mediaType') or manifest.get('mediaType'), digest, size, platform))
    return result


def _opener(source, desc):
    return lambda: source.open_blob(desc)
