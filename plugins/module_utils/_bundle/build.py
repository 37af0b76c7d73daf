# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Building a bundle manifest: every file hashed, the images from the one OCI store, apps and artifacts.

Reading and writing manifests (:mod:`manifest`) does not need the store; building one does.
"""

import os

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import OciError
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    ARTIFACT_ARCHES, BLOB_DIR, FORMAT, IMAGES_DIR, BundleError, artifact_arch_problem, utc_now)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import app_digest, walk_files


def images_from_layout(bundle_dir):
    """The manifest's ``images`` entries: what the bundle's one OCI store says it holds (none without a store)."""
    store = ImageStore(os.path.join(bundle_dir, IMAGES_DIR))
    if not os.path.isfile(os.path.join(store.path, 'index.json')):
        return []
    try:
        return store.images()
    except OciError as exc:
        raise BundleError('images/: %s' % exc)


def build_manifest(bundle_dir, meta, progress=None):
    """Hash every file of ``bundle_dir`` and return the manifest dict (does not write it).

    ``meta``: ``name``, ``version``, ``arches`` (required); optional ``created``
    (default: now, or ``SOURCE_DATE_EPOCH``), ``images`` (default: read from
    ``images/index.json``), ``base``, ``delta``, ``versions`` ({artifact name: {arch: version}}, recorded
    on the artifacts; a version of an artifact the bundle does not hold is an error). An ELF binary under
    ``artifacts/<arch>/`` built for another CPU is an error (:func:`artifact_arch_problem`).
    """
    for key in ('name', 'version', 'arches'):
        if not meta.get(key):
            raise BundleError('manifest meta: %s is required' % key)
    if not os.path.isdir(bundle_dir):
        raise BundleError('bundle directory %s does not exist' % bundle_dir)
    files = {}
    for rel in walk_files(bundle_dir):
        sha, size = sha256_file(os.path.join(bundle_dir, rel), progress)
        files[rel] = {'size': size, 'sha256': sha}

    artifacts = []
    apps = {}
    for rel, entry in files.items():
        parts = rel.split('/')
        if parts[0] == 'artifacts':
            if len(parts) != 4 or parts[1] not in ARTIFACT_ARCHES:
                raise BundleError('%s: artifacts must be stored as artifacts/<%s>/<name>/<file>' % (
                    rel, '|'.join(ARTIFACT_ARCHES)))
            problem = artifact_arch_problem(os.path.join(bundle_dir, rel), parts[2], parts[1], rel)
            if problem:
                raise BundleError(problem)
            artifacts.append({'name': parts[2], 'arch': parts[1], 'path': rel,
                              'sha256': entry['sha256'], 'size': entry['size']})
        elif parts[0] == 'apps':
            if len(parts) < 4:
                raise BundleError('%s: app files must be stored as apps/<name>/<version>/...' % rel)
            apps.setdefault((parts[1], parts[2]), []).append(('/'.join(parts[3:]), entry['sha256']))
        elif rel.startswith(BLOB_DIR + '/') and HEX64_RE.match(parts[-1]) and parts[-1] != entry['sha256']:
            raise BundleError('%s: image blob content has sha256 %s, not its name' % (rel, entry['sha256']))

    versions = meta.get('versions') or {}
    for art in artifacts:
        version = versions.get(art['name'], {}).get(art['arch'])
        if version is not None:
            art['version'] = version
    held = set((a['name'], a['arch']) for a in artifacts)
    for name, arches in sorted(versions.items()):
        for arch in sorted(arches):
            if (name, arch) not in held:
                raise BundleError('versions: %s/%s has a version (%s) but the bundle has no artifacts/%s/%s/' % (
                    arch, name, arches[arch], arch, name))
    manifest = {
        'format': FORMAT,
        'name': meta['name'],
        'version': meta['version'],
        'created': meta.get('created') or utc_now(),
        'arches': list(meta['arches']),
        'files': files,
        'images': meta['images'] if meta.get('images') is not None else images_from_layout(bundle_dir),
        'apps': [{'name': n, 'version': v, 'path': 'apps/%s/%s' % (n, v), 'sha256': app_digest(entries)}
                 for (n, v), entries in sorted(apps.items())],
        'artifacts': sorted(artifacts, key=lambda a: a['path']),
        'base': meta.get('base'),
        'delta': meta.get('delta') or False,
    }
    return manifest
