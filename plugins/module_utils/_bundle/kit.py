# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The site kit's checksums: what a site checks with ``ssh-keygen`` and ``sha256sum`` alone.

``kit.sha256`` lists, in ``sha256sum`` format, every file of the bundle a site runs or loads before
Ferry's own verification has run: ./bootstrap, ansible.cfg, the playbooks, the inventory example,
the wheels and collections under kit/. Images, artifacts and apps are left out (they are large and
nothing runs them before bundle_verify has checked them). The file is derived from the manifest, so
the manifest's signature covers it too; ``kit.sha256.sig`` signs it for ./bootstrap and for the
commands of docs/bundle.md (First install), which cannot read JSON.
"""

import gzip
import io
import tarfile

from ansible_collections.ferry.airgap.plugins.module_utils._safetar import iter_members, member_name, member_reader, open_tar
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import KIT_SUMS, BundleError


# Top-level directories whose files kit.sha256 leaves out.
KIT_EXCLUDED = ('images', 'artifacts', 'apps')


def kit_files(manifest):
    """Sorted paths of the manifest's files that kit.sha256 lists."""
    return sorted(rel for rel in manifest['files'] if rel.split('/', 1)[0] not in KIT_EXCLUDED)


def kit_sums(manifest):
    """The bytes of kit.sha256 for ``manifest`` (one ``<sha256>  <path>`` line per kit file)."""
    return ''.join('%s  %s\n' % (manifest['files'][rel]['sha256'], rel) for rel in kit_files(manifest)).encode('utf-8')


def check_kit_sums(raw, manifest):
    """Problems of kit.sha256 content ``raw`` (None: missing) against ``manifest``; [] when it matches."""
    if raw is None:
        return ['%s is missing: a site could not check the kit before running it' % KIT_SUMS]
    expected = kit_sums(manifest)
    if raw == expected:
        return []
    have = set(raw.decode('utf-8', 'replace').splitlines())
    want = set(expected.decode('utf-8').splitlines())
    diff = ['not in the manifest: %s' % line for line in sorted(have - want)[:5]]
    diff += ['missing: %s' % line for line in sorted(want - have)[:5]]
    return ['%s does not match the manifest (%s)' % (KIT_SUMS, '; '.join(diff) or 'line order or format')]


# A collection tarball's members that ansible-galaxy writes first (kept first).
_COLLECTION_FIRST = ('MANIFEST.json', 'FILES.json')
REPRODUCIBLE_MTIME = 0
GZIP_LEVEL = 9


def reproducible_tar_gz(path):
    """The bytes of the (gzip) tar ``path`` rewritten so the same content always gives the same bytes.

    ``ansible-galaxy collection build`` stamps MANIFEST.json and FILES.json with the build time, the other
    members with their checkout's mtimes, and the gzip header with the time: every build differs, and every
    delta would ship the kit's collection again. Here: members in a fixed order (MANIFEST.json, FILES.json,
    then sorted by name), mtime 0, owner 0:0 without names, mode 0755 for directories and executables and
    0644 otherwise, PAX format; gzip level 9 with mtime 0 and no file name. Member content is copied as is.
    The input is read with the safe tar reader (no member may escape, no devices); BundleError otherwise.
    """
    try:
        tar = open_tar(path)
        try:
            members = []
            for member in iter_members(tar, path):
                name = member_name(member).rstrip('/')
                if member.isreg():
                    reader = member_reader(tar, member, path)
                    try:
                        data = reader.read()
                    finally:
                        reader.close()
                else:
                    data = None
                members.append((name, member, data))
        finally:
            tar.close()
    except (ValueError, IOError, OSError) as exc:
        raise BundleError('cannot read %s: %s' % (path, exc))
    names = [m[0] for m in members]
    if len(set(names)) != len(names):
        raise BundleError('%s holds a member twice: %s' % (
            path, ', '.join(sorted(set(n for n in names if names.count(n) > 1)))))
    order = dict((name, i) for i, name in enumerate(_COLLECTION_FIRST))
    members.sort(key=lambda m: (order.get(m[0], len(order)), m[0]))
    raw = io.BytesIO()
    new = tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT)
    for name, member, data in members:
        info = tarfile.TarInfo(name)
        info.type = member.type
        info.mtime = REPRODUCIBLE_MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = ''
        info.mode = 0o755 if member.isdir() or member.mode & 0o111 else 0o644
        if member.issym() or member.islnk():
            info.linkname = member.linkname
        if data is not None:
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
        else:
            new.addfile(info)
    new.close()
    out = io.BytesIO()
    with gzip.GzipFile(filename='', mode='wb', fileobj=out, compresslevel=GZIP_LEVEL, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()
