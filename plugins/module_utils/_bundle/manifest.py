# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundle manifest: parsing, reading and writing it, the files it may list, app digests (building one: :mod:`build`)."""

import json
import os
import stat

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, pretty_json, sha256_bytes
from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError, atomic_write, read_file
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    FORMAT, MANIFEST, RESERVED, BundleError, check_relpath, is_str)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.site import is_site_local

# The largest manifest.json read (about 40,000 listed files); more is refused, not read.
MANIFEST_LIMIT = 8 * 1024 * 1024
# The largest signature (manifest.json.sig, an SSHSIG armor of a few hundred bytes) read.
SIGNATURE_LIMIT = 64 * 1024
# Typed keys of the manifest's lists: key -> (type, required).
_ENTRY_KEYS = {
    'images': {'ref': (str, True), 'digest': (str, True), 'platforms': (dict, False)},
    'artifacts': {'name': (str, True), 'arch': (str, True), 'path': (str, True), 'sha256': (str, True),
                  'size': (int, False), 'version': (str, False)},
    'apps': {'name': (str, True), 'version': (str, True), 'path': (str, True), 'sha256': (str, True)},
}


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


def _type_name(value):
    return {dict: 'an object', list: 'a list', str: 'a string', int: 'an integer', bool: 'a boolean'}.get(
        type(value), type(value).__name__)


def _is(value, kind):
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _check_entries(manifest, where):
    """The images, artifacts and apps lists: lists of objects whose known keys have the right types."""
    for key, spec in sorted(_ENTRY_KEYS.items()):
        entries = manifest.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise BundleError('%s: %s: expected a list, actual %s' % (where, key, _type_name(entries)))
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise BundleError('%s: %s[%d]: expected an object, actual %s' % (where, key, i, _type_name(entry)))
            for name, (kind, required) in sorted(spec.items()):
                if name not in entry:
                    if required:
                        raise BundleError('%s: %s[%d].%s: required key missing' % (where, key, i, name))
                    continue
                if not _is(entry[name], kind):
                    raise BundleError('%s: %s[%d].%s: expected %s, actual %s %r' % (
                        where, key, i, name, _type_name(kind()), _type_name(entry[name]), entry[name]))
            for plat, digest in sorted((entry.get('platforms') or {}).items()):
                if not is_str(digest):
                    raise BundleError('%s: %s[%d].platforms[%r]: expected a string, actual %s %r' % (
                        where, key, i, plat, _type_name(digest), digest))
    for key in ('name', 'version', 'created'):
        if key in manifest and not is_str(manifest[key]):
            raise BundleError('%s: %s: expected a string, actual %s %r' % (
                where, key, _type_name(manifest[key]), manifest[key]))
    arches = manifest.get('arches')
    if arches is not None and (not isinstance(arches, list) or not all(is_str(a) for a in arches)):
        raise BundleError('%s: arches: expected a list of strings, actual %r' % (where, arches))


def _check_tree(files, where):
    """No listed path may also be a parent directory of another listed path."""
    dirs = set()
    for rel in files:
        parts = rel.split('/')[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add('/'.join(parts[:i]))
    clash = sorted(dirs & set(files))
    if clash:
        raise BundleError('%s: files lists %r both as a file and as a directory holding other files' % (
            where, clash[0]))


def parse_manifest(raw, where='manifest.json'):
    """Parse and structurally check manifest bytes; returns the dict.

    Checks every key the bundle code reads: ``files`` ({path: {size, sha256}}, no path both a file
    and a directory), ``images``/``artifacts``/``apps`` (lists of objects with typed keys),
    ``delta``/``base``. Any violation is a :class:`BundleError` naming the key, expected and actual.
    """
    try:
        manifest = json.loads(raw.decode('utf-8') if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError('%s is not valid JSON: %s' % (where, e))
    if not isinstance(manifest, dict):
        raise BundleError('%s: expected a JSON object, actual %s' % (where, _type_name(manifest)))
    if manifest.get('format') != FORMAT:
        raise BundleError('%s: format: expected %d, actual %r' % (where, FORMAT, manifest.get('format')))
    files = manifest.get('files')
    if not isinstance(files, dict):
        raise BundleError('%s: files: expected an object of path -> {size, sha256}, actual %s' % (
            where, _type_name(files)))
    for rel, entry in files.items():
        bad = check_relpath(rel)
        if bad or rel in RESERVED:
            raise BundleError('%s: files[%r]: %s' % (where, rel, bad or 'a reserved name is never listed'))
        if is_site_local(rel):
            raise BundleError('%s: files[%r]: a bundle never carries site-local paths' % (where, rel))
        if (not isinstance(entry, dict) or not _is(entry.get('size'), int) or entry['size'] < 0
                or not is_str(entry.get('sha256')) or not HEX64_RE.match(entry['sha256'])):
            raise BundleError('%s: files[%r]: expected {"size": int, "sha256": 64 hex}, actual %r' % (
                where, rel, entry))
    _check_tree(files, where)
    _check_entries(manifest, where)
    delta = manifest.get('delta') or False
    if delta is not False:
        if not isinstance(delta, dict) or not isinstance(delta.get('present'), list):
            raise BundleError('%s: delta: expected false or {"present": [...]}, actual %r' % (where, delta))
        for rel in delta['present']:
            if not is_str(rel):
                raise BundleError('%s: delta.present: expected paths (strings), actual %s %r' % (
                    where, _type_name(rel), rel))
            if rel not in files:
                raise BundleError('%s: delta.present lists %r which is not in files' % (where, rel))
        base = manifest.get('base')
        if not isinstance(base, dict) or not is_str(base.get('manifest_sha256')):
            raise BundleError('%s: a delta needs base: {name, version, manifest_sha256}' % where)
    return manifest


def read_json(path, what, limit=MANIFEST_LIMIT):
    """``(data, raw)`` of the JSON file ``path`` (a regular file of at most ``limit`` bytes); BundleError otherwise."""
    try:
        raw = read_file(path, limit, what)
    except FsError as e:
        raise BundleError(str(e))
    try:
        return json.loads(raw.decode('utf-8')), raw
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError('%s %s is not valid JSON: %s' % (what, path, e))


def read_manifest(bundle_dir):
    """Return ``(manifest, raw_bytes)`` of ``bundle_dir/manifest.json``.

    Only a regular file is read (never through a symlink, a fifo or a device), and at most
    :data:`MANIFEST_LIMIT` bytes of it.
    """
    path = os.path.join(bundle_dir, MANIFEST)
    try:
        raw = read_file(path, MANIFEST_LIMIT, 'manifest')
    except FsError as e:
        raise BundleError(str(e))
    return parse_manifest(raw, path), raw
