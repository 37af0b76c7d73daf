# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a site adds to an unpacked bundle: the site-local paths, and which of them verification skips."""

import fnmatch

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError


# Paths a site adds to an unpacked bundle: ./bootstrap writes .ferry-venv/ and collections/, the
# operator writes inventory/hosts.yml (and group_vars/, host_vars/ next to it), Ansible may write
# .ansible/. verify_bundle skips them when it looks for unlisted files, and only then: a file the
# manifest lists is always checked, wherever it is.
SITE_LOCAL_DIRS = ('.ferry-venv', 'collections', '.ansible', 'inventory/group_vars', 'inventory/host_vars')
SITE_LOCAL_FILES = ('inventory/hosts.yml',)


class ExtraFilter(object):
    """Decides which unlisted paths of a bundle directory are site-local (skipped, not a problem).

    ``builtin`` enables the fixed list above; ``globs`` are extra :func:`fnmatch.fnmatchcase`
    patterns matched against the POSIX path relative to the bundle root (``*`` also matches
    ``/``); a directory that matches one (tried with and without a trailing ``/``) is skipped whole.
    """

    def __init__(self, globs=None, builtin=True):
        self.builtin = builtin
        self.globs = [g for g in (globs or []) if g]
        for glob in self.globs:
            if glob.startswith('/') or '..' in glob.split('/'):
                raise BundleError('ignore_extra: %r must be relative to the bundle and must not contain ..' % glob)

    def _glob(self, rel):
        return any(fnmatch.fnmatchcase(rel, g) for g in self.globs)

    def skip_dir(self, rel):
        if self.builtin and any(rel == d or rel.startswith(d + '/') for d in SITE_LOCAL_DIRS):
            return True
        return self._glob(rel) or self._glob(rel + '/')

    def skip_file(self, rel):
        if self.builtin and (rel in SITE_LOCAL_FILES or any(rel.startswith(d + '/') for d in SITE_LOCAL_DIRS)):
            return True
        return self._glob(rel)


def site_local_paths(bundle_dir):
    """Sorted relative paths of the site-local files and directories present in ``bundle_dir``.

    Directories end with ``/``; a symlink at one of these paths counts as present (it is the site's
    too). What the site added there is what a new bundle placed at ``bundle_dir`` must carry over.
    """
    # appended to this file, whose top is edited elsewhere: os is imported here
    import os  # pylint: disable=import-outside-toplevel
    found = []
    for rel in SITE_LOCAL_DIRS:
        full = os.path.join(bundle_dir, *rel.split('/'))
        if os.path.lexists(full):
            found.append(rel + '/' if os.path.isdir(full) and not os.path.islink(full) else rel)
    for rel in SITE_LOCAL_FILES:
        if os.path.lexists(os.path.join(bundle_dir, *rel.split('/'))):
            found.append(rel)
    return sorted(found)
