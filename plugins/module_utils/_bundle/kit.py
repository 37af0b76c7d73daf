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

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import KIT_SUMS


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
