# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundle manifest: every file with its size and sha256, the images (from the one OCI store), apps, artifacts."""

import json
import os
import stat

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, pretty_json, sha256_bytes, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._fs import atomic_write
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import OciError
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    ARTIFACT_ARCHES, BLOB_DIR, FORMAT, IMAGES_DIR, MANIFEST, SIGNATURE, BundleError, check_relpath, is_str, utc_now)


def walk_files(bundle_dir):
    """Sorted relative paths of every regular file in the bundle but the manifest and its signature.

    Raises :class:`BundleError` on symlinks and special files: a bundle only holds regular files.
    """
    found = []
    for root, dirs, files in os.walk(bundle_dir):
        dirs.sort()
        for name in dirs + files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, bundle_dir).replace(os.sep, '/')
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                raise BundleError('%s: symlinks are not allowed in a bundle (%s)' % (rel, bundle_dir))
            if name in files:
                if not stat.S_ISREG(st.st_mode):
                    raise BundleError('%s: not a regular file (%s)' % (rel, bundle_dir))
                if rel not in (MANIFEST, SIGNATURE):
                    found.append(rel)
    return sorted(found)


def app_digest(entries):
    """sha256 of an app's sorted listing: one ``<sha256>  <path relative to the app dir>\\n`` line per file."""
    listing = ''.join('%s  %s\n' % (sha, rel) for rel, sha in sorted(entries))
    return sha256_bytes(listing.encode('utf-8'))


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
    ``images/index.json``), ``base``, ``delta``.
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
            artifacts.append({'name': parts[2], 'arch': parts[1], 'path': rel,
                              'sha256': entry['sha256'], 'size': entry['size']})
        elif parts[0] == 'apps':
            if len(parts) < 4:
                raise BundleError('%s: app files must be stored as apps/<name>/<version>/...' % rel)
            apps.setdefault((parts[1], parts[2]), []).append(('/'.join(parts[3:]), entry['sha256']))
        elif rel.startswith(BLOB_DIR + '/') and HEX64_RE.match(parts[-1]) and parts[-1] != entry['sha256']:
            raise BundleError('%s: image blob content has sha256 %s, not its name' % (rel, entry['sha256']))

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


def write_manifest(bundle_dir, manifest):
    """Atomically write ``manifest.json``; returns the bytes written."""
    raw = pretty_json(manifest)
    atomic_write(os.path.join(bundle_dir, MANIFEST), raw)
    return raw


def parse_manifest(raw, where='manifest.json'):
    """Parse and structurally check manifest bytes; returns the dict."""
    try:
        manifest = json.loads(raw.decode('utf-8') if isinstance(raw, bytes) else raw)
    except ValueError as e:
        raise BundleError('%s is not valid JSON: %s' % (where, e))
    if not isinstance(manifest, dict):
        raise BundleError('%s: expected a JSON object' % where)
    if manifest.get('format') != FORMAT:
        raise BundleError('%s: format: expected %d, actual %r' % (where, FORMAT, manifest.get('format')))
    files = manifest.get('files')
    if not isinstance(files, dict):
        raise BundleError('%s: files: expected an object of path -> {size, sha256}' % where)
    for rel, entry in files.items():
        bad = check_relpath(rel)
        if bad or rel in (MANIFEST, SIGNATURE):
            raise BundleError('%s: files[%r]: %s' % (where, rel, bad or 'must not list itself'))
        if (not isinstance(entry, dict) or not isinstance(entry.get('size'), int) or entry['size'] < 0
                or not is_str(entry.get('sha256')) or not HEX64_RE.match(entry['sha256'])):
            raise BundleError('%s: files[%r]: expected {"size": int, "sha256": 64 hex}, actual %r' % (
                where, rel, entry))
    delta = manifest.get('delta') or False
    if delta is not False:
        if not isinstance(delta, dict) or not isinstance(delta.get('present'), list):
            raise BundleError('%s: delta: expected false or {"present": [...]}' % where)
        for rel in delta['present']:
            if rel not in files:
                raise BundleError('%s: delta.present lists %r which is not in files' % (where, rel))
        base = manifest.get('base')
        if not isinstance(base, dict) or not is_str(base.get('manifest_sha256')):
            raise BundleError('%s: a delta needs base: {name, version, manifest_sha256}' % where)
    return manifest


def read_manifest(bundle_dir):
    """Return ``(manifest, raw_bytes)`` of ``bundle_dir/manifest.json``."""
    path = os.path.join(bundle_dir, MANIFEST)
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except (IOError, OSError) as e:
        raise BundleError('cannot read %s: %s' % (path, e.strerror or e))
    return parse_manifest(raw, path), raw
