# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Importing the images a bundle spec declares into the store (several declarations of a ref merge)."""

from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES, PlatformError, arch_platform_key
from ansible_collections.ferry.airgap.plugins.module_utils._oci.archive import import_docker_archive, import_oci_archive
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import OciError
from ansible_collections.ferry.airgap.plugins.module_utils._oci.compress import LayerWriter
from ansible_collections.ferry.airgap.plugins.module_utils._oci.registry import pull_image


def import_spec(store, spec, arches=ARCHES, layers=None):
    """Import one image declaration ({ref, docker_archive|oci_archive|registry, arch}); returns descriptors.

    ``layers``: a compress.LayerWriter (default: layers stored as they arrive).
    """
    layers = layers or LayerWriter(store)
    arches = [spec['arch']] if spec.get('arch') else list(arches)
    for arch in arches:
        try:
            arch_platform_key(arch)
        except PlatformError as exc:
            raise OciError('image %s: %s' % (spec.get('ref'), exc))
    if spec.get('docker_archive'):
        return import_docker_archive(store, spec['docker_archive'], spec['ref'], arches, layers)
    if spec.get('oci_archive'):
        return import_oci_archive(store, spec['oci_archive'], spec['ref'], arches, layers)
    if spec.get('registry'):
        reg = spec['registry']
        return pull_image(store, reg['ref'], arches, reg.get('username'), reg.get('password'),
                          bool(reg.get('insecure')), reg.get('ca_file'), reg.get('timeout') or 60, layers)
    raise OciError("image %s: give one of docker_archive, oci_archive or registry" % spec.get('ref'))


def sync_images(store, specs, arches=ARCHES, compression='none'):
    """Import every declaration; several declarations of one ref are merged (one per platform).

    ``compression`` ('zstd', 'gzip', 'none'): how layers that arrive uncompressed are stored
    (compress.LayerWriter; one writer for the whole run, so a layer shared by two archives is stored once).
    Returns {'added': [refs], 'updated': [refs]} comparing index.json before and after.
    """
    layers = LayerWriter(store, compression)
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
            manifests.extend(import_spec(store, spec, arches, layers))
        store.set_ref(ref, manifests)
    after = store.refs()
    return {'added': [r for r, g in grouped if r not in before],
            'updated': [r for r, g in grouped if r in before and before[r] != after[r]]}
