# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which bundle files one host needs (docs/distribution.md); runs on the deploy node.

From ``manifest.json`` and the bundle's OCI store it lists the files of a host's arch: its
artifacts, its platform's image blobs, chosen apps, with sizes and sha256 from the manifest
(nothing is re-hashed). :mod:`serve` then serves them and :mod:`pull` brings them to the host.
"""

import os

from ansible_collections.ferry.airgap.plugins.module_utils._platform import arch_platform_key
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import OciError
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import platform_plan
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import IMAGES_DIR, BundleError, DistributeError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import read_manifest

LAYOUT_FILES = ('images/oci-layout', 'images/index.json')


def _listing(names):
    return ', '.join(sorted(names)) or 'none'


def select(bundle_dir, arch, artifacts=(), images=None, apps=()):
    """The files one host needs. ``images=None`` means every image that has the host's platform.

    Returns a dict: name, version, platform, files (sorted [{path, size, sha256}]), bytes,
    artifacts {name: bundle path}, images {ref: {digest, platform_digest}}, images_skipped (refs
    without the platform, only when ``images`` is None), apps {name: [versions]}.
    """
    try:
        manifest, dummy = read_manifest(bundle_dir)
    except BundleError as exc:
        raise DistributeError(str(exc))
    label = 'bundle %s %s' % (manifest.get('name'), manifest.get('version'))
    arches = manifest.get('arches') or []
    if arch not in arches:
        raise DistributeError('%s has no %s binaries or images (it carries: %s)' % (label, arch, _listing(arches)))
    platform = arch_platform_key(arch)
    listed = manifest['files']
    chosen = {}

    def take(rel, why):
        entry = listed.get(rel)
        if entry is None:
            raise DistributeError('%s: %s needs %s, which manifest.json does not list' % (label, why, rel))
        chosen[rel] = entry

    result = {'name': manifest.get('name'), 'version': manifest.get('version'), 'platform': platform,
              'artifacts': {}, 'images': {}, 'images_skipped': [], 'apps': {}}

    by_name = {}
    for item in manifest.get('artifacts') or []:
        by_name.setdefault(item['name'], {})[item['arch']] = item['path']
    for name in artifacts:
        have = by_name.get(name, {})
        rel = have.get(arch) or have.get('noarch')
        if rel is None:
            mine = [n for n, per in by_name.items() if arch in per]
            noarch = [n for n, per in by_name.items() if 'noarch' in per]
            raise DistributeError("%s has no artifact '%s' for %s (it has for %s: %s; noarch: %s)" % (
                label, name, arch, arch, _listing(mine), _listing(noarch)))
        take(rel, "artifact '%s'" % name)
        result['artifacts'][name] = rel

    _select_images(bundle_dir, label, platform, images, take, result)

    known_apps = {}
    for app in manifest.get('apps') or []:
        known_apps.setdefault(app['name'], []).append(app)
    for name in apps or ():
        if name not in known_apps:
            raise DistributeError("%s has no app '%s' (it has: %s)" % (label, name, _listing(known_apps)))
        for app in known_apps[name]:
            prefix = app['path'].rstrip('/') + '/'
            for rel in listed:
                if rel.startswith(prefix):
                    take(rel, "app '%s'" % name)
            result['apps'].setdefault(name, []).append(app['version'])

    result['files'] = [{'path': rel, 'size': chosen[rel]['size'], 'sha256': chosen[rel]['sha256']}
                       for rel in sorted(chosen)]
    result['bytes'] = sum(entry['size'] for entry in chosen.values())
    return result


def _select_images(bundle_dir, label, platform, images, take, result):
    store = ImageStore(os.path.join(bundle_dir, IMAGES_DIR))
    if images is not None and not images:
        return
    if not store.exists() or not os.path.isfile(os.path.join(store.path, 'index.json')):
        if images:
            raise DistributeError('%s has no image store (images/), so no image %s' % (label, ', '.join(images)))
        return
    try:
        refs = store.refs()
    except OciError as exc:
        raise DistributeError('%s: %s' % (label, exc))
    wanted = sorted(refs) if images is None else list(images)
    unknown = [ref for ref in wanted if ref not in refs]
    if unknown:
        raise DistributeError('%s has no image %s (it has: %s)' % (label, ', '.join(unknown), _listing(refs)))
    picked = False
    for ref in wanted:
        try:
            plan = platform_plan(store, ref, platform)
        except OciError as exc:
            if images is None and 'has no platform' in str(exc):
                result['images_skipped'].append(ref)
                continue
            raise DistributeError('%s: %s' % (label, exc))
        picked = True
        for digest, dummy, kind in plan['blobs']:
            take('%s/blobs/sha256/%s' % (IMAGES_DIR, digest.split(':', 1)[1]), 'image %s (%s)' % (ref, kind))
        result['images'][ref] = {'digest': plan['top']['digest'], 'platform_digest': plan['manifests'][0]['digest']}
    if picked:
        for rel in LAYOUT_FILES:
            take(rel, 'the image store')
