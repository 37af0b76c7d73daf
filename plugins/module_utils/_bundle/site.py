# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a site adds to an unpacked bundle: the site-local paths, the record ./bootstrap keeps of them.

A bundle as delivered never carries a site-local path (building refuses them, a manifest listing one
is invalid, a tar's unlisted members are never extracted). ./bootstrap makes .ferry-venv/ and
collections/ from scratch each time it runs and writes :data:`RECORD`: every file and symlink it made,
with an HMAC-SHA256 keyed by the site key (a secret outside the bundle, see :func:`default_site_key`).
What it made is accepted only when it matches that record (:func:`check_site_local`); anything else in
those directories, or a record the site key does not sign, is a problem: it did not come from here.
"""

import fnmatch
import hashlib
import hmac
import os
import stat

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError, read_file
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError


# Paths a site adds to an unpacked bundle: ./bootstrap writes .ferry-venv/ and collections/, the
# operator writes inventory/hosts.yml (and group_vars/, host_vars/ next to it), Ansible may write
# .ansible/. verify_bundle skips them when it looks for unlisted files, and only then: a file the
# manifest lists is always checked, wherever it is.
SITE_LOCAL_DIRS = ('.ferry-venv', 'collections', '.ansible', 'inventory/group_vars', 'inventory/host_vars')
# ./bootstrap's record of what it made (below).
RECORD = '.ferry-site.record'
SITE_LOCAL_FILES = ('inventory/hosts.yml', RECORD)
# What ./bootstrap makes and records: code the site runs.
BOOTSTRAP_DIRS = ('.ferry-venv', 'collections')
RECORD_HEADER = 'ferry-site-record 1'
SITE_KEY_ENV = 'FERRY_SITE_KEY'
_MAX_RECORD = 16 * 1024 * 1024
_MAX_KEY = 4096


def is_site_local(rel):
    """True when the bundle-relative POSIX path ``rel`` is (under) a site-local path."""
    return rel in SITE_LOCAL_FILES or any(rel == d or rel.startswith(d + '/') for d in SITE_LOCAL_DIRS)


def default_site_key():
    """The site key's path: $FERRY_SITE_KEY, else /etc/ferry/site.key for root, else ~/.config/ferry/site.key.

    ./bootstrap resolves it the same way; the key never leaves the deploy node and is mode 0600.
    """
    if os.environ.get(SITE_KEY_ENV):
        return os.environ[SITE_KEY_ENV]
    if os.geteuid() == 0:
        return '/etc/ferry/site.key'
    base = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
    return os.path.join(base, 'ferry', 'site.key')


def _read_small(path, limit, what):
    """Bytes of the regular file ``path`` (``_fs.read_file``: no symlink, fifo or device, at most ``limit``); None when absent."""
    if not os.path.lexists(path):
        return None
    try:
        return read_file(path, limit, what)
    except FsError as exc:
        raise BundleError(str(exc))


def read_record(bundle_dir, key_path):
    """{relative path: ('F', sha256) or ('L', symlink target)} of ./bootstrap's record, checked with the site key.

    Raises :class:`BundleError` saying why when there is no record, no key, or the key does not sign it.
    """
    path = os.path.join(bundle_dir, RECORD)
    raw = _read_small(path, _MAX_RECORD, 'site record')
    if raw is None:
        raise BundleError('%s has no %s: ./bootstrap has not run there' % (bundle_dir, RECORD))
    key = _read_small(key_path, _MAX_KEY, 'site key')
    if key is None:
        raise BundleError('site key %s does not exist (./bootstrap creates it; set %s or site_key where it is)'
                          % (key_path, SITE_KEY_ENV))
    body, sep, last = raw.rstrip(b'\n').rpartition(b'\n')
    fields = last.split(b'\t')
    if not sep or len(fields) != 2 or fields[0] != b'hmac-sha256':
        raise BundleError('%s: the last line must be "hmac-sha256<TAB><hex>"' % path)
    expected = hmac.new(key.strip(), body + b'\n', hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode('ascii'), fields[1].strip()):
        raise BundleError('%s is not signed by the site key %s: it was not written by ./bootstrap at this site'
                          % (path, key_path))
    lines = body.decode('utf-8', 'replace').split('\n')
    if lines[0] != RECORD_HEADER:
        raise BundleError('%s: expected the header %r, actual %r' % (path, RECORD_HEADER, lines[0][:60]))
    entries = {}
    for line in lines[1:]:
        parts = line.split('\t')
        if len(parts) != 3 or parts[0] not in ('F', 'L') or (parts[0] == 'F' and not HEX64_RE.match(parts[1])):
            raise BundleError('%s: malformed line %r' % (path, line[:120]))
        rel = parts[2][2:] if parts[2].startswith('./') else parts[2]
        entries[rel] = (parts[0], parts[1])
    return entries


def _made(bundle_dir):
    """{relative path: ('F', sha256) | ('L', target) | ('?', description)} under BOOTSTRAP_DIRS."""
    found = {}
    for top in BOOTSTRAP_DIRS:
        start = os.path.join(bundle_dir, top)
        if not os.path.lexists(start):
            continue
        if os.path.islink(start) or not os.path.isdir(start):
            found[top] = ('?', 'not a directory')
            continue
        for root, dirs, names in os.walk(start):
            for name in dirs + names:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, bundle_dir).replace(os.sep, '/')
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    found[rel] = ('L', os.readlink(full))
                elif stat.S_ISREG(st.st_mode):
                    found[rel] = ('F', sha256_file(full)[0])
                elif not stat.S_ISDIR(st.st_mode):
                    found[rel] = ('?', 'a special file')
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return found


def check_site_local(bundle_dir, key_path=None):
    """Problems with what ./bootstrap makes in ``bundle_dir``: [] when it matches the site's record (or is absent).

    Everything under .ferry-venv/ and collections/ must be exactly what the record lists, and the record
    must be signed by the site key; otherwise that code did not come from ./bootstrap at this site.
    """
    made = _made(bundle_dir)
    if not made:
        return []
    key_path = key_path or default_site_key()
    try:
        record = read_record(bundle_dir, key_path)
    except BundleError as exc:
        tops = sorted(set(rel.split('/', 1)[0] + '/' for rel in made))
        return ['%s: not made by ./bootstrap at this site (%s); remove %s and run ./bootstrap'
                % (', '.join(tops), exc, ' '.join(tops))]
    problems = []
    for rel in sorted(set(made) | set(record)):
        have, want = made.get(rel), record.get(rel)
        if have == want:
            continue
        if want is None:
            problems.append('%s: not in the site record of ./bootstrap (%s)' % (rel, have[1] if have[0] == '?' else 'added'))
        elif have is None:
            problems.append('%s: in the site record of ./bootstrap but missing' % rel)
        else:
            problems.append('%s: changed since ./bootstrap made it (recorded %s %s, actual %s %s)'
                            % (rel, want[0], want[1], have[0], have[1]))
    return problems[:20] + (['... and %d more' % (len(problems) - 20)] if len(problems) > 20 else [])


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
    found = []
    for rel in SITE_LOCAL_DIRS:
        full = os.path.join(bundle_dir, *rel.split('/'))
        if os.path.lexists(full):
            found.append(rel + '/' if os.path.isdir(full) and not os.path.islink(full) else rel)
    for rel in SITE_LOCAL_FILES:
        if os.path.lexists(os.path.join(bundle_dir, *rel.split('/'))):
            found.append(rel)
    return sorted(found)
