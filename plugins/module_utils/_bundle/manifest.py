# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundle manifest: parsing, reading and writing it, the files it may list, app digests (building one: :mod:`build`)."""

import json
import os
import stat

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, pretty_json, sha256_bytes
from ansible_collections.ferry.airgap.plugins.module_utils._fs import atomic_write
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    FORMAT, MANIFEST, RESERVED, BundleError, check_relpath, is_str)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.site import is_site_local


def walk_files(bundle_dir):
    """Sorted relative paths of every regular file in the bundle but the reserved names (manifest, kit sums, signatures).

    Raises :class:`BundleError` on symlinks and special files (a bundle only holds regular files) and on
    site-local paths (a bundle as delivered never carries them).
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
                if is_site_local(rel):
                    raise BundleError('%s: a bundle must not carry site-local paths (they are made at the site: '
                                      'docs/bundle.md, First install); remove it from %s' % (rel, bundle_dir))
                if rel not in RESERVED:
                    found.append(rel)
    return sorted(found)


def app_digest(entries):
    """sha256 of an app's sorted listing: one ``<sha256>  <path relative to the app dir>\\n`` line per file."""
    listing = ''.join('%s  %s\n' % (sha, rel) for rel, sha in sorted(entries))
    return sha256_bytes(listing.encode('utf-8'))


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
        if bad or rel in RESERVED:
            raise BundleError('%s: files[%r]: %s' % (where, rel, bad or 'a reserved name is never listed'))
        if is_site_local(rel):
            raise BundleError('%s: files[%r]: a bundle never carries site-local paths' % (where, rel))
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
