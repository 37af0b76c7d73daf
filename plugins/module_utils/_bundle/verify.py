# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verifying a bundle directory against its manifest: every file, unlisted extras, the blobs the images need;
placing a verified bundle at its destination (never over a directory that is not a bundle, keeping the site's own files)."""

import os
import stat

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, file_mismatch
from ansible_collections.ferry.airgap.plugins.module_utils._fs import makedirs, replace_dir
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import OciError, layer_compression
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    BLOB_DIR, IMAGES_DIR, MANIFEST, RESERVED, BundleError, artifact_arch_problem, is_str)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import app_digest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.site import site_local_paths


def _scan(bundle_dir, listed, extra_filter=None):
    """Walk ``bundle_dir`` for verification: ``(on_disk, problems, skipped)``.

    ``on_disk`` holds the regular files (not the manifest and its signature); symlinks and special
    files are problems. Unlisted paths ``extra_filter`` accepts as site-local are not descended into
    nor reported: they go to ``skipped`` (directories with a trailing ``/``). A directory holding a
    listed file is always walked, and a listed file is never skipped.
    """
    listed_dirs = set()
    for rel in listed:
        parts = rel.split('/')[:-1]
        for i in range(1, len(parts) + 1):
            listed_dirs.add('/'.join(parts[:i]))
    on_disk, problems, skipped = set(), [], []
    for root, dirs, names in os.walk(bundle_dir):
        dirs.sort()
        keep = []
        for name in dirs:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, bundle_dir).replace(os.sep, '/')
            if extra_filter is not None and rel not in listed_dirs and extra_filter.skip_dir(rel):
                skipped.append(rel + '/')
            elif os.path.islink(full):
                problems.append('%s: symlinks are not allowed in a bundle (%s)' % (rel, bundle_dir))
            else:
                keep.append(name)
        dirs[:] = keep
        for name in sorted(names):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, bundle_dir).replace(os.sep, '/')
            if rel in RESERVED:
                continue
            if extra_filter is not None and rel not in listed and extra_filter.skip_file(rel):
                skipped.append(rel)
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                problems.append('%s: symlinks are not allowed in a bundle (%s)' % (rel, bundle_dir))
            elif not stat.S_ISREG(st.st_mode):
                problems.append('%s: not a regular file (%s)' % (rel, bundle_dir))
            else:
                on_disk.add(rel)
    return on_disk, problems, sorted(skipped)


def verify_bundle(bundle_dir, manifest, progress=None, partial=False, extra_filter=None, skipped=None):
    """Check ``bundle_dir`` against ``manifest``; returns a list of problems (empty = good).

    Checks every listed file (missing, size, sha256 naming expected and
    actual), files on disk the manifest does not list, image blobs whose content
    hash differs from their name, image blobs the images need but the bundle
    lacks, the artifacts/apps entries against the file list, and that every ELF
    binary among the artifacts is built for the arch it is declared for (20 bytes read each).

    ``partial=True`` is for an unapplied delta: files not in ``delta.present``
    may be absent. ``progress(n)`` is called with bytes hashed.

    ``extra_filter`` (a :class:`_bundle.site.ExtraFilter`) names unlisted site-local paths that are not
    problems; they are appended to the list ``skipped`` when one is given.
    """
    problems = []
    files = manifest.get('files') or {}
    delta = manifest.get('delta') or False
    if partial and not delta:
        problems.append('%s: partial verification requested but the manifest is not a delta' % bundle_dir)
        partial = False
    optional = set(files) - set(delta['present']) if partial else set()

    on_disk, scan_problems, site_local = _scan(bundle_dir, set(files), extra_filter)
    problems.extend(scan_problems)
    if skipped is not None:
        skipped.extend(site_local)

    for rel in sorted(files):
        entry = files[rel]
        if rel not in on_disk:
            if rel not in optional:
                problems.append('missing file: %s (expected sha256 %s, %d bytes)' % (rel, entry['sha256'], entry['size']))
            continue
        full = os.path.join(bundle_dir, rel)
        mismatch = file_mismatch(full, entry['size'], entry['sha256'], progress)
        if mismatch and mismatch[0] == 'size':
            problems.append('size mismatch: %s: expected %d bytes, actual %d bytes' % (rel, entry['size'], mismatch[1]))
        elif mismatch:
            problems.append('sha256 mismatch: %s: expected %s, actual %s' % (rel, entry['sha256'], mismatch[1]))
        elif rel.startswith(BLOB_DIR + '/') and rel.rsplit('/', 1)[-1] != entry['sha256']:
            problems.append('image blob %s: content sha256 is %s, not its name' % (rel, entry['sha256']))
    for rel in sorted(on_disk - set(files)):
        problems.append('unlisted file: %s (not in the manifest)' % rel)

    if not partial:
        for digest, referrer in ImageStore(os.path.join(bundle_dir, IMAGES_DIR)).references(_image_tops(manifest)):
            if not is_str(digest) or not digest.startswith('sha256:') or not HEX64_RE.match(digest[7:]):
                problems.append('%s references an invalid digest %r' % (referrer, digest))
                continue
            rel = '%s/%s' % (BLOB_DIR, digest[7:])
            if rel not in on_disk:
                problems.append('image blob missing: %s (needed by %s)' % (rel, referrer))

    for art in manifest.get('artifacts') or []:
        entry = files.get(art.get('path'))
        if entry is None:
            problems.append('artifact %s/%s: %s is not in files' % (art.get('arch'), art.get('name'), art.get('path')))
        elif entry['sha256'] != art.get('sha256'):
            problems.append('artifact %s/%s: sha256 expected %s, files lists %s' % (
                art.get('arch'), art.get('name'), art.get('sha256'), entry['sha256']))
        elif art.get('path') in on_disk:
            problem = artifact_arch_problem(os.path.join(bundle_dir, art['path']), art.get('name'), art.get('arch'),
                                            art['path'])
            if problem:
                problems.append(problem)
    for app in manifest.get('apps') or []:
        prefix = '%s/' % app.get('path')
        entries = [(rel[len(prefix):], e['sha256']) for rel, e in files.items() if rel.startswith(prefix)]
        actual = app_digest(entries)
        if actual != app.get('sha256'):
            problems.append('app %s %s: sha256 expected %s, actual %s' % (
                app.get('name'), app.get('version'), app.get('sha256'), actual))
    return problems


def _image_tops(manifest):
    """(digest, referrer) of every image and platform manifest the bundle manifest names."""
    tops = []
    for img in manifest.get('images') or []:
        if not isinstance(img, dict):
            continue
        label = 'image %s' % img.get('ref')
        tops.append((img.get('digest'), label))
        for plat, digest in sorted((img.get('platforms') or {}).items()):
            tops.append((digest, '%s (%s)' % (label, plat)))
    return tops


def layer_compressions(bundle_dir, manifest):
    """{platform: sorted compressions ('gzip', 'none', 'zstd') of the layers of the bundle's images there}.

    What a host's runtime must be able to read: preflight compares it with the runtime each host will
    run (``_oci.common.COMPRESSION_MIN_RUNTIME``). Read from the image manifests the verified bundle
    manifest names; call it after verification (an unreadable manifest is left out here, verification
    reports it).
    """
    store = ImageStore(os.path.join(bundle_dir, IMAGES_DIR))
    found = {}
    for img in manifest.get('images') or []:
        for plat, digest in sorted(((img.get('platforms') if isinstance(img, dict) else None) or {}).items()):
            try:
                layers = store.read_json(digest).get('layers') or []
            except (OciError, AttributeError, IOError, OSError):
                continue
            kinds = found.setdefault(plat, set())
            kinds.update(layer_compression(layer.get('mediaType')) or 'other' for layer in layers
                         if isinstance(layer, dict))
    return dict((plat, sorted(kinds)) for plat, kinds in sorted(found.items()))


def artifact_versions(manifest):
    """{artifact name: {arch: version}} of the manifest's artifacts that record one."""
    versions = {}
    for art in manifest.get('artifacts') or []:
        if isinstance(art, dict) and art.get('version'):
            versions.setdefault(art.get('name'), {})[art.get('arch')] = art['version']
    return versions


def arch_artifacts(manifest):
    """{arch: sorted artifact names} a host of each of the manifest's arches can be given: its arch's and the noarch ones.

    The rule of ``select.select`` (an artifact for the host's arch, else its noarch one), for the plays
    that decide which artifacts a host gets (role ferry: SELinux policy RPMs) and for preflight.
    """
    per_arch = {}
    for art in manifest.get('artifacts') or []:
        if isinstance(art, dict):
            per_arch.setdefault(art.get('arch'), set()).add(art.get('name'))
    noarch = per_arch.get('noarch', set())
    return dict((arch, sorted(per_arch.get(arch, set()) | noarch)) for arch in manifest.get('arches') or [])


def guard_dest(dest):
    """Check that the bundle directory ``dest`` may be replaced; returns the site's own paths in it.

    Nothing at ``dest``, or an empty directory: ``[]``. A directory holding ``manifest.json`` (a
    bundle): the site-local paths present in it (``site.site_local_paths``), which
    :func:`place_bundle` carries over. Anything else (a file, a symlink, a non-empty directory
    without a manifest such as ``/opt/ferry``) raises :class:`BundleError`: it is never replaced.
    Only reads.
    """
    if not os.path.lexists(dest):
        return []
    if os.path.islink(dest) or not os.path.isdir(dest):
        raise BundleError('%s exists and is not a directory: refusing to replace it with a bundle' % dest)
    if not os.listdir(dest):
        return []
    if not os.path.lexists(os.path.join(dest, MANIFEST)):
        raise BundleError('%s exists, is not empty and holds no %s: refusing to replace it with a bundle' % (
            dest, MANIFEST))
    return site_local_paths(dest)


def _clashes(paths, files):
    """The site-local ``paths`` the new bundle's ``files`` also use (a listed file there or inside)."""
    clash = []
    for path in paths:
        bare = path.rstrip('/')
        if bare in files or any(rel.startswith(bare + '/') for rel in files):
            clash.append(path)
    return clash


def place_bundle(staged, dest, manifest):
    """Move the verified bundle directory ``staged`` to ``dest``, keeping the site's own files.

    :func:`guard_dest` first (a non-bundle ``dest`` is never replaced). The site-local paths of an
    existing bundle at ``dest`` (venv, installed collections, inventory...) are moved into the new
    bundle before it replaces the old one; when the new bundle lists files at one of those paths the
    run is refused naming them, and nothing is changed. ``staged`` must be on the filesystem of
    ``dest`` (a temporary sibling). Returns the paths carried over.
    """
    carry = guard_dest(dest)
    files = manifest.get('files') or {}
    clash = _clashes(carry, files)
    if clash:
        raise BundleError('refusing to replace %s: the new bundle lists files at the site\'s own %s, which would be '
                          'lost; move %s out of %s first' % (dest, ', '.join(clash), 'it' if len(clash) == 1 else 'them',
                                                             dest))
    moved = []
    try:
        for rel in carry:
            bare = rel.rstrip('/')
            target = os.path.join(staged, *bare.split('/'))
            makedirs(os.path.dirname(target))
            os.rename(os.path.join(dest, *bare.split('/')), target)
            moved.append(bare)
        replace_dir(staged, dest)
    except BaseException:
        for bare in reversed(moved):  # the old bundle is back at dest (replace_dir rolls back): so are these
            os.rename(os.path.join(staged, *bare.split('/')), os.path.join(dest, *bare.split('/')))
        raise
    return carry
