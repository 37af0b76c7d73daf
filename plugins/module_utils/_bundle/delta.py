# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deltas: a bundle holding only the files a site's base bundle lacks, and rebuilding the full bundle from both."""

import errno
import os

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, sha256_bytes, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._fs import (
    FsError, copy_file, disk_full, link_or_copy, remove, replace_dir, tmp_sibling)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    KIT_SIG, KIT_SUMS, MANIFEST, SIGNATURE, BundleError, is_str)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import (
    MANIFEST_LIMIT, parse_manifest, read_json, read_manifest, write_manifest)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.verify import verify_bundle


def digest_inventory(source):
    """The small file a site carries back: which file hashes its bundle holds.

    ``source``: a bundle directory, its ``manifest.json``, or an existing
    inventory file. Returns ``{'name', 'version', 'manifest_sha256', 'sha256': [sorted hashes]}``.
    """
    if os.path.isdir(source):
        manifest, raw = read_manifest(source)
    else:
        data, raw = read_json(source, 'digest inventory or manifest', MANIFEST_LIMIT)
        if isinstance(data, dict) and 'files' not in data and 'manifest_sha256' in data:
            return _check_inventory(data, source)
        manifest = parse_manifest(raw, source)
    return {
        'name': manifest.get('name'),
        'version': manifest.get('version'),
        'manifest_sha256': sha256_bytes(raw),
        'sha256': sorted(set(e['sha256'] for e in manifest['files'].values())),
    }


def _check_inventory(data, where):
    for key in ('name', 'version', 'manifest_sha256', 'sha256'):
        if key not in data:
            raise BundleError('digest inventory %s: %s is missing' % (where, key))
    if not is_str(data['manifest_sha256']) or not HEX64_RE.match(data['manifest_sha256']):
        raise BundleError('digest inventory %s: manifest_sha256: expected 64 hex, actual %r' % (
            where, data['manifest_sha256']))
    if not isinstance(data['sha256'], list) or not all(is_str(s) and HEX64_RE.match(s) for s in data['sha256']):
        raise BundleError('digest inventory %s: sha256: expected a list of 64-hex digests' % where)
    return {'name': data['name'], 'version': data['version'], 'manifest_sha256': data['manifest_sha256'],
            'sha256': sorted(set(data['sha256']))}


def _ident(name, version, manifest_sha256):
    return '%s %s (manifest sha256 %s)' % (name, version, manifest_sha256)


def delta_manifest(new_manifest, base_inventory):
    """The manifest a delta carries: the full new manifest plus ``base`` and ``delta.present``."""
    have = set(base_inventory['sha256'])
    manifest = dict(new_manifest)
    manifest['base'] = {'name': base_inventory['name'], 'version': base_inventory['version'],
                        'manifest_sha256': base_inventory['manifest_sha256']}
    manifest['delta'] = {'present': sorted(rel for rel, e in new_manifest['files'].items() if e['sha256'] not in have)}
    return manifest


def build_delta(new_bundle_dir, base_inventory, dest_dir, signer=None):
    """Write to ``dest_dir`` a delta of ``new_bundle_dir`` against ``base_inventory``.

    Only files whose sha256 the base lacks are hard-linked (when ``_fs.link_or_copy`` finds that
    safe, else copied with modes 0644/0755) and re-hashed; the full new manifest is written with ``base`` and
    ``delta.present`` set. ``signer(manifest_path)`` signs it when given.
    Built in a temporary sibling and renamed over ``dest_dir`` at the end.
    Returns a summary dict.
    """
    if isinstance(base_inventory, str):
        base_inventory = digest_inventory(base_inventory)
    # a bundle reconstructed from a delta still carries base/delta: they are replaced here
    new_manifest, _raw = read_manifest(new_bundle_dir)
    manifest = delta_manifest(new_manifest, base_inventory)
    files = manifest['files']
    if os.path.abspath(dest_dir) == os.path.abspath(new_bundle_dir):
        raise BundleError('delta destination %s must differ from the new bundle' % dest_dir)
    tmp = tmp_sibling(dest_dir, directory=True)
    try:
        os.chmod(tmp, 0o755)
        shipped = 0
        for rel in manifest['delta']['present']:
            src = os.path.join(new_bundle_dir, rel)
            if not os.path.isfile(src):
                raise BundleError('new bundle %s is incomplete: %s is missing' % (new_bundle_dir, rel))
            dst = os.path.join(tmp, rel)
            _put(src, dst)
            actual, size = sha256_file(dst)
            if actual != files[rel]['sha256']:
                raise BundleError('new bundle %s: sha256 mismatch: %s: expected %s, actual %s' % (
                    new_bundle_dir, rel, files[rel]['sha256'], actual))
            shipped += size
        write_manifest(tmp, manifest)
        if signer is not None:
            signer(os.path.join(tmp, MANIFEST))
        for name in (KIT_SUMS, KIT_SIG):  # derived from the files, which the delta lists unchanged
            if os.path.lexists(os.path.join(new_bundle_dir, name)):
                _put(os.path.join(new_bundle_dir, name), os.path.join(tmp, name))
        replace_dir(tmp, dest_dir)
    except BaseException:
        remove(tmp)
        raise
    return {
        'files_total': len(files),
        'files_shipped': len(manifest['delta']['present']),
        'bytes_total': sum(e['size'] for e in files.values()),
        'bytes_shipped': shipped,
        'base': manifest['base'],
        'name': manifest['name'],
        'version': manifest['version'],
    }


def _put(src, dst):
    """link_or_copy with the operator's messages: a special file or a full filesystem is a BundleError."""
    try:
        link_or_copy(src, dst)
    except FsError as e:
        raise BundleError(str(e))
    except (IOError, OSError) as e:
        if e.errno == errno.ENOSPC:
            raise BundleError(str(disk_full(dst)))
        raise BundleError('cannot write %s from %s: %s' % (dst, src, e.strerror or e))


def apply_delta(delta_dir, base_dir, dest_dir, progress=None, place=replace_dir):
    """Reconstruct the full bundle of ``delta_dir`` into ``dest_dir`` using ``base_dir``.

    Files not shipped in the delta are taken from the base by sha256 (whatever
    their path there). Refuses a missing base or one whose manifest sha256 is
    not the recorded base, naming both. Files are hard-linked only when
    ``_fs.link_or_copy`` finds that safe (owned by us or root, modes 0644/0755, in
    a directory no one else can write), else copied with modes 0644/0755. The
    result is fully verified before ``place(tmp_dir, dest_dir)`` moves it into
    place (default ``_fs.replace_dir``; bundle_verify passes one that guards
    ``dest`` and carries the site's own files over). Returns ``(manifest, problems=[])``.
    """
    manifest, raw = read_manifest(delta_dir)
    if not manifest.get('delta'):
        raise BundleError('%s is not a delta (its manifest has no delta section)' % delta_dir)
    want = manifest['base']
    want_id = _ident(want.get('name'), want.get('version'), want.get('manifest_sha256'))
    base_manifest_path = os.path.join(base_dir, MANIFEST)
    if not os.path.isfile(base_manifest_path):
        raise BundleError('base bundle %s is missing (no %s); the delta %s %s needs base %s' % (
            base_dir, MANIFEST, manifest.get('name'), manifest.get('version'), want_id))
    base_manifest, base_raw = read_manifest(base_dir)
    have_sha = sha256_bytes(base_raw)
    if have_sha != want.get('manifest_sha256'):
        raise BundleError('wrong base: the delta %s %s was built against %s but %s holds %s' % (
            manifest.get('name'), manifest.get('version'), want_id, base_dir,
            _ident(base_manifest.get('name'), base_manifest.get('version'), have_sha)))
    by_hash = {}
    for rel, entry in sorted(base_manifest['files'].items()):
        by_hash.setdefault(entry['sha256'], rel)
    present = set(manifest['delta']['present'])
    for path in (delta_dir, base_dir):
        if os.path.abspath(dest_dir) == os.path.abspath(path):
            raise BundleError('destination %s must differ from the delta and the base' % dest_dir)

    tmp = tmp_sibling(dest_dir, directory=True)
    try:
        os.chmod(tmp, 0o755)
        for rel, entry in sorted(manifest['files'].items()):
            if rel in present:
                src = os.path.join(delta_dir, rel)
                if not os.path.isfile(src):
                    raise BundleError('delta %s is incomplete: %s is missing' % (delta_dir, rel))
            else:
                base_rel = by_hash.get(entry['sha256'])
                if base_rel is None:
                    raise BundleError('%s (sha256 %s) is neither in the delta nor in the base %s' % (
                        rel, entry['sha256'], base_dir))
                src = os.path.join(base_dir, base_rel)
                if not os.path.isfile(src):
                    raise BundleError('base %s is incomplete: %s (sha256 %s, needed for %s) is missing' % (
                        base_dir, base_rel, entry['sha256'], rel))
            _put(src, os.path.join(tmp, rel))
        with open(os.path.join(tmp, MANIFEST), 'wb') as out:  # the very bytes parsed (and verified) above
            out.write(raw)
        os.chmod(os.path.join(tmp, MANIFEST), 0o644)
        for name in (SIGNATURE, KIT_SUMS, KIT_SIG):
            if os.path.lexists(os.path.join(delta_dir, name)):
                try:
                    copy_file(os.path.join(delta_dir, name), os.path.join(tmp, name), 0o644)
                except FsError as e:
                    raise BundleError(str(e))
        problems = verify_bundle(tmp, manifest, progress=progress)
        if problems:
            raise BundleError('the bundle reconstructed from delta %s and base %s does not verify: %s' % (
                delta_dir, base_dir, '; '.join(problems)))
        place(tmp, dest_dir)
    except BaseException:
        remove(tmp)
        raise
    return manifest, []
