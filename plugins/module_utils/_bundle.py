# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ferry bundles: spec validation, manifest, verification, signing, deltas, packing.

The layout and formats are described in docs/bundle.md. Everything here is
standard library + ansible.module_utils so it runs on target hosts with Python
3.6+. Functions raise :class:`BundleError` (or :class:`SpecError`) with a
message meant for the operator; modules turn that into ``fail_json``.

Everything that produces output (a file, a bundle directory, a tar) is written
under a temporary sibling name ``.<name>.tmp-XXXX`` and renamed into place at
the end; on error the temporary is removed, so a failed run never leaves
something that looks like a valid bundle.
"""

import calendar
import errno
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
from urllib.parse import unquote, urlparse

from ansible_collections.ferry.airgap.plugins.module_utils import _cli

MANIFEST = 'manifest.json'
SIGNATURE = 'manifest.json.sig'
FORMAT = 1
DEFAULT_NAMESPACE = 'ferry-bundle'
ARCHES = ('x86_64', 'aarch64')
ARTIFACT_ARCHES = ARCHES + ('noarch',)
BLOB_DIR = 'images/blobs/sha256'
CHUNK_RE = re.compile(r'^(?P<base>.+)\.(?P<index>\d{3})$')
HEX64_RE = re.compile(r'^[0-9a-f]{64}$')
SAFE_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+-]*$')
BUF_SIZE = 1024 * 1024

OCI_INDEX_TYPES = ('application/vnd.oci.image.index.v1+json',
                   'application/vnd.docker.distribution.manifest.list.v2+json')
OCI_MANIFEST_TYPES = ('application/vnd.oci.image.manifest.v1+json',
                      'application/vnd.docker.distribution.manifest.v2+json')


class BundleError(Exception):
    """An operator-facing error about a bundle, spec, delta or tar."""


class SpecError(BundleError):
    """A spec problem; ``path`` is the offending key path, e.g. ``artifacts[2].sha256``."""

    def __init__(self, path, message):
        self.path = path
        self.reason = message
        BundleError.__init__(self, '%s: %s' % (path, message) if path else message)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def _is_str(value):
    return isinstance(value, str)


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, progress=None):
    """Stream ``path`` through sha256; returns ``(hexdigest, size)``.

    ``progress(n)`` is called with the number of bytes of each chunk read.
    """
    h = hashlib.sha256()
    size = 0
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(BUF_SIZE)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest(), size


def check_relpath(relpath):
    """Return an error string if ``relpath`` is not a clean relative POSIX path, else None."""
    if not _is_str(relpath) or not relpath:
        return 'not a non-empty string'
    if relpath.startswith('/') or '\\' in relpath or '\x00' in relpath:
        return 'not a relative POSIX path'
    parts = relpath.split('/')
    if any(p in ('', '.', '..') for p in parts):
        return 'contains an empty, "." or ".." component'
    return None


def tmp_sibling(path, directory=False):
    parent = os.path.dirname(os.path.abspath(path)) or '.'
    prefix = '.%s.tmp-' % os.path.basename(os.path.normpath(path))
    if not os.path.isdir(parent):
        raise BundleError('cannot write %s: its directory %s does not exist' % (path, parent))
    if directory:
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=parent)
    os.close(fd)
    return tmp


def _remove(path):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def atomic_write(path, data, mode=0o644):
    """Write bytes ``data`` to ``path`` via a temporary sibling and a rename."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    tmp = tmp_sibling(path)
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def replace_dir(tmp_dir, dest_dir):
    """Move the finished directory ``tmp_dir`` to ``dest_dir``, replacing what is there."""
    old = None
    if os.path.lexists(dest_dir):
        old = tmp_sibling(dest_dir, directory=True)
        os.rmdir(old)
        os.rename(dest_dir, old)
    try:
        os.rename(tmp_dir, dest_dir)
    except BaseException:
        if old is not None:
            os.rename(old, dest_dir)
        raise
    if old is not None:
        _remove(old)


def _link_or_copy(src, dst):
    """Hard-link ``src`` to ``dst`` when on the same filesystem, else copy it."""
    parent = os.path.dirname(dst)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)


def dumps(data):
    """The canonical JSON encoding Ferry writes (sorted keys, stable, newline-terminated)."""
    return (json.dumps(data, indent=2, sort_keys=True, separators=(',', ': ')) + '\n').encode('utf-8')


def read_bytes(path):
    """The file's bytes, or None when it cannot be read (missing, a directory...)."""
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _load_json(path, what):
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except (IOError, OSError) as e:
        raise BundleError('cannot read %s %s: %s' % (what, path, e.strerror or e))
    try:
        return json.loads(raw.decode('utf-8')), raw
    except ValueError as e:
        raise BundleError('%s %s is not valid JSON: %s' % (what, path, e))


def utc_now():
    epoch = os.environ.get('SOURCE_DATE_EPOCH')
    when = int(epoch) if epoch and epoch.isdigit() else time.time()
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(when))


# ---------------------------------------------------------------------------
# spec
# ---------------------------------------------------------------------------

_TOP_KEYS = ('name', 'version', 'arches', 'artifacts', 'images', 'apps', 'signing')
_ARTIFACT_KEYS = ('name', 'arch', 'src', 'sha256', 'dest')
_IMAGE_KEYS = ('ref', 'docker_archive', 'oci_archive', 'registry', 'arch')
_REGISTRY_KEYS = ('ref', 'username', 'password', 'insecure', 'ca_file')
_APP_KEYS = ('name', 'version', 'src')
_SIGNING_KEYS = ('key', 'identity', 'namespace')
_URL_SCHEMES = ('http', 'https', 'file')


def _check_keys(data, allowed, path):
    if not isinstance(data, dict):
        raise SpecError(path, 'must be a mapping, got %s' % type(data).__name__)
    for key in sorted(data, key=str):
        if key not in allowed:
            raise SpecError('%s.%s' % (path, key) if path else str(key),
                            'unknown key (allowed: %s)' % ', '.join(sorted(allowed)))


def _req_str(data, key, path, pattern=None, what=None):
    where = '%s.%s' % (path, key) if path else key
    if key not in data or data[key] is None:
        raise SpecError(where, 'required key missing')
    value = data[key]
    if not _is_str(value):
        raise SpecError(where, 'must be a string, got %s %r (quote it in YAML)' % (type(value).__name__, value))
    value = value.strip()
    if not value:
        raise SpecError(where, 'must not be empty')
    if pattern is not None and not pattern.match(value):
        raise SpecError(where, '%r is not a valid %s' % (value, what or 'value'))
    return value


def _opt_str(data, key, path):
    if data.get(key) is None:
        return None
    return _req_str(data, key, path)


def _list(data, key, path, required=False):
    where = '%s.%s' % (path, key) if path else key
    value = data.get(key)
    if value is None:
        if required:
            raise SpecError(where, 'required key missing')
        return []
    if not isinstance(value, list):
        raise SpecError(where, 'must be a list, got %s' % type(value).__name__)
    return value


def _arch(value, where, allowed):
    if not _is_str(value):
        raise SpecError(where, 'must be a string, got %s' % type(value).__name__)
    if value not in allowed:
        raise SpecError(where, 'unsupported arch %r (supported: %s)' % (value, ', '.join(allowed)))
    return value


def _local_or_url(value, where, base_dir, allow_url=True):
    if '://' in value:
        scheme = value.split('://', 1)[0].lower()
        if not allow_url or scheme not in _URL_SCHEMES:
            raise SpecError(where, 'unsupported URL scheme %r in %r (use %s)' % (
                scheme, value, 'a local path' if not allow_url else 'a local path, file://, http:// or https://'))
        return value
    value = os.path.expanduser(value)
    if base_dir and not os.path.isabs(value):
        value = os.path.normpath(os.path.join(base_dir, value))
    return value


def _url_path(src):
    return unquote(urlparse(src).path)


def file_name_of(src):
    if '://' in src:
        return posixpath.basename(_url_path(src))
    return os.path.basename(src)


def validate_spec(data, base_dir=None):
    """Validate a bundle spec (already parsed from YAML) and return it normalized.

    Raises :class:`SpecError` whose message starts with the key path of the
    first problem (``artifacts[2].sha256: ...``). Relative local paths are made
    absolute against ``base_dir`` (the spec file's directory) when given.
    """
    if not isinstance(data, dict):
        raise SpecError('', 'the spec must be a mapping, got %s' % type(data).__name__)
    _check_keys(data, _TOP_KEYS, '')
    spec = {
        'name': _req_str(data, 'name', '', SAFE_NAME_RE, 'bundle name ([A-Za-z0-9._+-], starting alphanumeric)'),
        'version': _req_str(data, 'version', '', SAFE_NAME_RE, 'version ([A-Za-z0-9._+-], starting alphanumeric)'),
    }

    arches = _list(data, 'arches', '', required=True)
    if not arches:
        raise SpecError('arches', 'must list at least one of %s' % ', '.join(ARCHES))
    spec['arches'] = []
    for i, arch in enumerate(arches):
        arch = _arch(arch, 'arches[%d]' % i, ARCHES)
        if arch in spec['arches']:
            raise SpecError('arches[%d]' % i, 'duplicate arch %r' % arch)
        spec['arches'].append(arch)

    spec['artifacts'] = []
    seen = {}
    for i, item in enumerate(_list(data, 'artifacts', '')):
        path = 'artifacts[%d]' % i
        _check_keys(item, _ARTIFACT_KEYS, path)
        art = {'name': _req_str(item, 'name', path, SAFE_NAME_RE, 'artifact name')}
        art['arch'] = _arch(_req_str(item, 'arch', path), path + '.arch', ARTIFACT_ARCHES)
        if art['arch'] != 'noarch' and art['arch'] not in spec['arches']:
            raise SpecError(path + '.arch', '%r is not one of the bundle arches (%s)' % (
                art['arch'], ', '.join(spec['arches'])))
        art['src'] = _local_or_url(_req_str(item, 'src', path), path + '.src', base_dir)
        sha = _req_str(item, 'sha256', path).lower()
        if sha.startswith('sha256:'):
            sha = sha[len('sha256:'):]
        if not HEX64_RE.match(sha):
            raise SpecError(path + '.sha256', 'must be 64 hexadecimal characters, got %r' % item['sha256'])
        art['sha256'] = sha
        dest = _opt_str(item, 'dest', path)
        if dest is None:
            dest = file_name_of(art['src'])
            where = path + '.src'
        else:
            where = path + '.dest'
        if not dest or '/' in dest or dest in ('.', '..') or dest.startswith('.'):
            raise SpecError(where, 'cannot use %r as a file name; set dest to a plain file name' % dest)
        art['dest'] = dest
        key = (art['name'], art['arch'])
        if key in seen:
            raise SpecError(path + '.name', 'duplicate artifact %r for arch %s (also artifacts[%d])' % (
                art['name'], art['arch'], seen[key]))
        seen[key] = i
        spec['artifacts'].append(art)

    spec['images'] = []
    seen = {}
    for i, item in enumerate(_list(data, 'images', '')):
        path = 'images[%d]' % i
        _check_keys(item, _IMAGE_KEYS, path)
        img = {'ref': _req_str(item, 'ref', path)}
        sources = [k for k in ('docker_archive', 'oci_archive', 'registry') if item.get(k) is not None]
        if len(sources) != 1:
            raise SpecError(path, 'needs exactly one of docker_archive, oci_archive, registry (got %s)' % (
                ', '.join(sources) or 'none'))
        source = sources[0]
        if source == 'registry':
            reg = item['registry']
            rpath = path + '.registry'
            if _is_str(reg):
                reg = {'ref': reg}
            _check_keys(reg, _REGISTRY_KEYS, rpath)
            norm = {'ref': _opt_str(reg, 'ref', rpath) or img['ref'],
                    'username': _opt_str(reg, 'username', rpath),
                    'password': _opt_str(reg, 'password', rpath),
                    'insecure': reg.get('insecure', False),
                    'ca_file': _opt_str(reg, 'ca_file', rpath)}
            if not isinstance(norm['insecure'], bool):
                raise SpecError(rpath + '.insecure', 'must be true or false, got %r' % (norm['insecure'],))
            if norm['ca_file']:
                norm['ca_file'] = _local_or_url(norm['ca_file'], rpath + '.ca_file', base_dir, allow_url=False)
            img['registry'] = norm
        else:
            img[source] = _local_or_url(_req_str(item, source, path), '%s.%s' % (path, source), base_dir,
                                        allow_url=False)
        if item.get('arch') is not None:
            img['arch'] = _arch(item['arch'], path + '.arch', ARCHES)
            if img['arch'] not in spec['arches']:
                raise SpecError(path + '.arch', '%r is not one of the bundle arches (%s)' % (
                    img['arch'], ', '.join(spec['arches'])))
        if img['ref'] in seen:
            raise SpecError(path + '.ref', 'duplicate image %r (also images[%d])' % (img['ref'], seen[img['ref']]))
        seen[img['ref']] = i
        spec['images'].append(img)

    spec['apps'] = []
    seen = {}
    for i, item in enumerate(_list(data, 'apps', '')):
        path = 'apps[%d]' % i
        _check_keys(item, _APP_KEYS, path)
        app = {'name': _req_str(item, 'name', path, SAFE_NAME_RE, 'app name'),
               'version': _req_str(item, 'version', path, SAFE_NAME_RE, 'app version'),
               'src': _local_or_url(_req_str(item, 'src', path), path + '.src', base_dir, allow_url=False)}
        if app['name'] in seen:
            raise SpecError(path + '.name', 'duplicate app %r (also apps[%d])' % (app['name'], seen[app['name']]))
        seen[app['name']] = i
        spec['apps'].append(app)

    signing = data.get('signing')
    if signing is None:
        spec['signing'] = None
    else:
        _check_keys(signing, _SIGNING_KEYS, 'signing')
        spec['signing'] = {
            'key': _local_or_url(_req_str(signing, 'key', 'signing'), 'signing.key', base_dir, allow_url=False),
            'identity': _opt_str(signing, 'identity', 'signing'),
            'namespace': _opt_str(signing, 'namespace', 'signing') or DEFAULT_NAMESPACE,
        }
    return spec


def load_spec_file(path):
    """Parse a spec file (YAML, or JSON when PyYAML is not installed) and validate it."""
    try:
        with open(path, 'rb') as f:
            raw = f.read().decode('utf-8')
    except (IOError, OSError) as e:
        raise BundleError('cannot read spec %s: %s' % (path, e.strerror or e))
    except UnicodeDecodeError as e:
        raise BundleError('spec %s is not UTF-8: %s' % (path, e))
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise BundleError('spec %s is not valid YAML: %s' % (path, e))
    else:
        try:
            data = json.loads(raw)
        except ValueError:
            raise BundleError('spec %s: PyYAML is not installed on this host, so the spec must be JSON '
                              '(or pass it already parsed)' % path)
    try:
        return validate_spec(data, base_dir=os.path.dirname(os.path.abspath(path)))
    except SpecError as e:
        raise SpecError(e.path, '%s (in %s)' % (e.reason, path))


# ---------------------------------------------------------------------------
# fetching artifacts
# ---------------------------------------------------------------------------

def artifact_path(bundle_dir, arch, name, dest):
    return os.path.join(bundle_dir, 'artifacts', arch, name, dest)


def _open_src(src, opener, timeout):
    if '://' not in src:
        return open(src, 'rb')
    scheme = src.split('://', 1)[0]
    if scheme.lower() == 'file':
        return open(_url_path(src), 'rb')
    if opener is None:
        from ansible.module_utils.urls import open_url

        def opener(url):
            return open_url(url, timeout=timeout)
    return opener(src)


def fetch_artifact(src, sha256, dest_path, opener=None, timeout=60, progress=None, check_mode=False):
    """Fetch ``src`` to ``dest_path`` if it is not already there with ``sha256``.

    Returns ``{'changed', 'sha256', 'size', 'path'}``. A download whose digest
    differs raises :class:`BundleError` naming src, expected and actual; the
    temporary is removed and a stale ``dest_path`` with a wrong digest is
    removed too, so nothing unverified is left in the bundle.
    """
    sha256 = sha256.lower()
    stale = False
    if os.path.isfile(dest_path):
        have, size = sha256_file(dest_path)
        if have == sha256:
            return {'changed': False, 'sha256': have, 'size': size, 'path': dest_path}
        stale = True
    if check_mode:
        return {'changed': True, 'sha256': sha256, 'size': None, 'path': dest_path}
    if stale:  # a file with the wrong digest is never kept, whatever happens next
        _remove(dest_path)
    parent = os.path.dirname(dest_path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    tmp = tmp_sibling(dest_path)
    try:
        h = hashlib.sha256()
        size = 0
        try:
            src_f = _open_src(src, opener, timeout)
        except (IOError, OSError) as e:
            raise BundleError('cannot open %s: %s' % (src, getattr(e, 'strerror', None) or e))
        except Exception as e:
            raise BundleError('cannot fetch %s: %s' % (src, e))
        try:
            with open(tmp, 'wb') as out:
                while True:
                    chunk = src_f.read(BUF_SIZE)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except (IOError, OSError) as e:
            raise BundleError('error while fetching %s: %s' % (src, e))
        finally:
            src_f.close()
        actual = h.hexdigest()
        if actual != sha256:
            raise BundleError('sha256 mismatch for %s: expected %s, actual %s (%d bytes); nothing was kept%s' % (
                src, sha256, actual, size, ' and the stale %s was removed' % dest_path if stale else ''))
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest_path)
    except BaseException:
        _remove(tmp)
        raise
    return {'changed': True, 'sha256': actual, 'size': size, 'path': dest_path}


# ---------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------

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
            if rel in (MANIFEST, SIGNATURE):
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


def app_digest(entries):
    """sha256 of an app's sorted listing: one ``<sha256>  <path relative to the app dir>\\n`` line per file."""
    listing = ''.join('%s  %s\n' % (sha, rel) for rel, sha in sorted(entries))
    return sha256_bytes(listing.encode('utf-8'))


def _platform_key(platform):
    if not isinstance(platform, dict) or not platform.get('os') or not platform.get('architecture'):
        return None
    key = '%s/%s' % (platform['os'], platform['architecture'])
    if platform.get('variant'):
        key += '/' + platform['variant']
    return key


def _read_blob(bundle_dir, digest, limit=4 * 1024 * 1024):
    if not _is_str(digest) or not digest.startswith('sha256:') or not HEX64_RE.match(digest[7:]):
        return None
    path = os.path.join(bundle_dir, BLOB_DIR, digest[7:])
    try:
        if os.path.getsize(path) > limit:
            return None
        with open(path, 'rb') as f:
            return json.loads(f.read().decode('utf-8'))
    except (IOError, OSError, ValueError):
        return None


def images_from_layout(bundle_dir):
    """Describe the images of ``images/index.json`` as manifest ``images`` entries."""
    index_path = os.path.join(bundle_dir, 'images', 'index.json')
    if not os.path.isfile(index_path):
        return []
    index, _raw = _load_json(index_path, 'OCI index')
    images = []
    for desc in index.get('manifests') or []:
        annotations = desc.get('annotations') or {}
        ref = annotations.get('io.containerd.image.name') or annotations.get('org.opencontainers.image.ref.name')
        digest = desc.get('digest')
        platforms = {}
        if desc.get('mediaType') in OCI_INDEX_TYPES:
            child = _read_blob(bundle_dir, digest) or {}
            for m in child.get('manifests') or []:
                key = _platform_key(m.get('platform'))
                if key and not key.startswith('unknown/'):
                    platforms[key] = m.get('digest')
        elif _platform_key(desc.get('platform')):
            platforms[_platform_key(desc['platform'])] = digest
        else:
            man = _read_blob(bundle_dir, digest) or {}
            config = _read_blob(bundle_dir, (man.get('config') or {}).get('digest')) or {}
            key = _platform_key(config)
            if key:
                platforms[key] = digest
        images.append({'ref': ref, 'digest': digest, 'platforms': platforms})
    return sorted(images, key=lambda i: (i['ref'] or '', i['digest'] or ''))


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
    raw = dumps(manifest)
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
                or not _is_str(entry.get('sha256')) or not HEX64_RE.match(entry['sha256'])):
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
        if not isinstance(base, dict) or not _is_str(base.get('manifest_sha256')):
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


# ---------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------

def _image_refs(bundle_dir, manifest):
    """(digest, referrer) pairs every image of the bundle needs, walking index -> manifests -> config/layers.

    Only indexes and manifests are opened: a config or layer blob is a leaf, even when its JSON
    happens to hold a "config" or "layers" key (an image config does: its runtime "config").
    """
    todo = []
    index_path = os.path.join(bundle_dir, 'images', 'index.json')
    if os.path.isfile(index_path):
        try:
            index, _raw = _load_json(index_path, 'OCI index')
        except BundleError:
            index = {}
        for desc in index.get('manifests') or [] if isinstance(index, dict) else []:
            if isinstance(desc, dict):
                todo.append((desc.get('digest'), 'images/index.json', True))
    for img in manifest.get('images') or []:
        if not isinstance(img, dict):
            continue
        label = 'image %s' % img.get('ref')
        todo.append((img.get('digest'), label, True))
        for plat, digest in sorted((img.get('platforms') or {}).items()):
            todo.append((digest, '%s (%s)' % (label, plat), True))
    seen = set()
    out = []
    while todo:
        digest, referrer, document = todo.pop(0)
        if digest in seen:
            continue
        seen.add(digest)
        out.append((digest, referrer))
        if not document:
            continue
        doc = _read_blob(bundle_dir, digest)
        if not isinstance(doc, dict):
            continue
        label = 'blob %s' % digest
        for m in doc.get('manifests') or []:
            if isinstance(m, dict):
                todo.append((m.get('digest'), label, True))
        if isinstance(doc.get('config'), dict):
            todo.append((doc['config'].get('digest'), label, False))
        for layer in doc.get('layers') or []:
            if isinstance(layer, dict):
                todo.append((layer.get('digest'), label, False))
    return out


def verify_bundle(bundle_dir, manifest, progress=None, partial=False, extra_filter=None, skipped=None):
    """Check ``bundle_dir`` against ``manifest``; returns a list of problems (empty = good).

    Checks every listed file (missing, size, sha256 naming expected and
    actual), files on disk the manifest does not list, image blobs whose content
    hash differs from their name, image blobs the images need but the bundle
    lacks, and the artifacts/apps entries against the file list.

    ``partial=True`` is for an unapplied delta: files not in ``delta.present``
    may be absent. ``progress(n)`` is called with bytes hashed.

    ``extra_filter`` (an :class:`ExtraFilter`) names unlisted site-local paths that are not
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
        size = os.path.getsize(full)
        if size != entry['size']:
            problems.append('size mismatch: %s: expected %d bytes, actual %d bytes' % (rel, entry['size'], size))
            continue
        actual, _size = sha256_file(full, progress)
        if actual != entry['sha256']:
            problems.append('sha256 mismatch: %s: expected %s, actual %s' % (rel, entry['sha256'], actual))
            continue
        name = rel.rsplit('/', 1)[-1]
        if rel.startswith(BLOB_DIR + '/') and name != actual:
            problems.append('image blob %s: content sha256 is %s, not its name' % (rel, actual))
    for rel in sorted(on_disk - set(files)):
        problems.append('unlisted file: %s (not in the manifest)' % rel)

    if not partial:
        for digest, referrer in _image_refs(bundle_dir, manifest):
            if not _is_str(digest) or not digest.startswith('sha256:') or not HEX64_RE.match(digest[7:]):
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
    for app in manifest.get('apps') or []:
        prefix = '%s/' % app.get('path')
        entries = [(rel[len(prefix):], e['sha256']) for rel, e in files.items() if rel.startswith(prefix)]
        actual = app_digest(entries)
        if actual != app.get('sha256'):
            problems.append('app %s %s: sha256 expected %s, actual %s' % (
                app.get('name'), app.get('version'), app.get('sha256'), actual))
    return problems


# ---------------------------------------------------------------------------
# signatures (OpenSSH ssh-keygen -Y)
# ---------------------------------------------------------------------------

def _exec(runner, argv, data=None):
    """Run ``argv`` with a :class:`_cli.Runner` (None: a local one); a module's runner resolves the binary."""
    if runner is None:
        runner = _cli.Runner()
    if runner.module is not None:
        argv = [runner.module.get_bin_path(argv[0], required=True)] + list(argv[1:])
    return runner.run(argv, data=data)


def _reason(out, err):
    return ' '.join(x.strip() for x in (err, out) if x and x.strip()) or 'no output'


def sign_bytes(runner, data, key, namespace=DEFAULT_NAMESPACE):
    """Return the SSHSIG armored signature text of ``data`` made with private ``key``."""
    if not os.path.isfile(key):
        raise BundleError('signing key %s does not exist' % key)
    rc, out, err = _exec(runner, ['ssh-keygen', '-Y', 'sign', '-f', key, '-n', namespace], data)
    if rc != 0 or '-----BEGIN SSH SIGNATURE-----' not in (out or ''):
        raise BundleError('ssh-keygen could not sign with %s (rc=%d): %s' % (key, rc, _reason('', err)))
    return out


def sign(runner, manifest_path, key, namespace=DEFAULT_NAMESPACE):
    """Sign ``manifest_path`` into ``manifest_path + '.sig'`` (atomically); returns the signature text."""
    with open(manifest_path, 'rb') as f:
        data = f.read()
    sig = sign_bytes(runner, data, key, namespace)
    atomic_write(manifest_path + '.sig', sig)
    return sig


def verify_signature(runner, manifest_path, allowed_signers, identity=None, namespace=DEFAULT_NAMESPACE,
                     data=None, sig_path=None):
    """Verify ``manifest_path``'s signature (``<manifest>.sig``) against ``allowed_signers``.

    ``data`` may carry the manifest bytes already read, so the bytes verified
    are exactly the bytes the caller then parses. Without ``identity`` the
    principal is looked up with ``ssh-keygen -Y find-principals``. Returns
    ``{'principal', 'message'}``; raises :class:`BundleError` with ssh-keygen's
    reason on any failure (unknown key, tampered manifest, wrong namespace).
    """
    sig_path = sig_path or manifest_path + '.sig'
    if data is None:
        with open(manifest_path, 'rb') as f:
            data = f.read()
    if not os.path.isfile(sig_path):
        raise BundleError('signature %s is missing' % sig_path)
    if not allowed_signers or not os.path.isfile(allowed_signers):
        raise BundleError('allowed_signers file %s does not exist' % allowed_signers)
    if not identity:
        rc, out, err = _exec(runner, ['ssh-keygen', '-Y', 'find-principals', '-f', allowed_signers, '-s', sig_path])
        if rc != 0 or not out.strip():
            raise BundleError('signature %s: the signing key is not listed in %s: %s%s' % (
                sig_path, allowed_signers, _reason(out, err), _signer_hint(runner, sig_path, namespace, data)))
        identity = out.strip().splitlines()[0].strip()
    rc, out, err = _exec(runner, ['ssh-keygen', '-Y', 'verify', '-f', allowed_signers, '-I', identity,
                                  '-n', namespace, '-s', sig_path], data)
    if rc != 0:
        raise BundleError('signature verification of %s failed for identity %s in %s (namespace %s): %s%s' % (
            manifest_path, identity, allowed_signers, namespace, _reason(out, err),
            _signer_hint(runner, sig_path, namespace, data)))
    return {'principal': identity, 'message': _reason(out, err)}


def _signer_hint(runner, sig_path, namespace, data):
    """Explain a failed verification: is the signature intact but by another key, or broken?"""
    rc, out, err = _exec(runner, ['ssh-keygen', '-Y', 'check-novalidate', '-n', namespace, '-s', sig_path], data)
    text = _reason(out, err)
    if rc == 0:
        return ' (the signature itself is intact: %s; that key is not allowed for this identity)' % text
    return ' (the signature does not match the manifest content: %s)' % text


# ---------------------------------------------------------------------------
# deltas
# ---------------------------------------------------------------------------

def digest_inventory(source):
    """The small file a site carries back: which file hashes its bundle holds.

    ``source``: a bundle directory, its ``manifest.json``, or an existing
    inventory file. Returns ``{'name', 'version', 'manifest_sha256', 'sha256': [sorted hashes]}``.
    """
    if os.path.isdir(source):
        manifest, raw = read_manifest(source)
    else:
        data, raw = _load_json(source, 'digest inventory or manifest')
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
    if not _is_str(data['manifest_sha256']) or not HEX64_RE.match(data['manifest_sha256']):
        raise BundleError('digest inventory %s: manifest_sha256: expected 64 hex, actual %r' % (
            where, data['manifest_sha256']))
    if not isinstance(data['sha256'], list) or not all(_is_str(s) and HEX64_RE.match(s) for s in data['sha256']):
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

    Only files whose sha256 the base lacks are hard-linked (or copied) and
    re-hashed; the full new manifest is written with ``base`` and
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
            _link_or_copy(src, dst)
            actual, size = sha256_file(dst)
            if actual != files[rel]['sha256']:
                raise BundleError('new bundle %s: sha256 mismatch: %s: expected %s, actual %s' % (
                    new_bundle_dir, rel, files[rel]['sha256'], actual))
            shipped += size
        write_manifest(tmp, manifest)
        if signer is not None:
            signer(os.path.join(tmp, MANIFEST))
        replace_dir(tmp, dest_dir)
    except BaseException:
        _remove(tmp)
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


def apply_delta(delta_dir, base_dir, dest_dir, progress=None):
    """Reconstruct the full bundle of ``delta_dir`` into ``dest_dir`` using ``base_dir``.

    Files not shipped in the delta are taken from the base by sha256 (whatever
    their path there). Refuses a missing base or one whose manifest sha256 is
    not the recorded base, naming both. The result is fully verified before it
    is renamed into place. Returns ``(manifest, problems=[])``.
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
            _link_or_copy(src, os.path.join(tmp, rel))
        for name in (MANIFEST, SIGNATURE):
            if os.path.isfile(os.path.join(delta_dir, name)):
                shutil.copyfile(os.path.join(delta_dir, name), os.path.join(tmp, name))
        problems = verify_bundle(tmp, manifest, progress=progress)
        if problems:
            raise BundleError('the bundle reconstructed from delta %s and base %s does not verify: %s' % (
                delta_dir, base_dir, '; '.join(problems)))
        replace_dir(tmp, dest_dir)
    except BaseException:
        _remove(tmp)
        raise
    return manifest, []


# ---------------------------------------------------------------------------
# packing into one tar or chunks for removable media
# ---------------------------------------------------------------------------

class _ChunkWriter(object):
    """A write-only file object that splits what it is given into numbered chunk files."""

    def __init__(self, directory, base_name, chunk_size):
        self.directory = directory
        self.base_name = base_name
        self.chunk_size = chunk_size
        self.parts = []
        self.total = hashlib.sha256()
        self.size = 0
        self._f = None
        self._h = None
        self._n = 0

    def _open_next(self):
        self._close_current()
        name = '%s.%03d' % (self.base_name, len(self.parts))
        if len(self.parts) >= 1000:
            raise BundleError('more than 1000 chunks; use a larger chunk_size')
        self._f = open(os.path.join(self.directory, name), 'wb')
        self._h = hashlib.sha256()
        self._n = 0
        self.parts.append({'name': name, 'size': 0, 'sha256': None})

    def _close_current(self):
        if self._f is not None:
            self._f.close()
            self.parts[-1]['size'] = self._n
            self.parts[-1]['sha256'] = self._h.hexdigest()
            self._f = None

    def write(self, data):
        view = memoryview(data)
        self.total.update(view)
        self.size += len(view)
        while len(view):
            if self._f is None or (self.chunk_size and self._n >= self.chunk_size):
                self._open_next()
            room = len(view) if not self.chunk_size else min(len(view), self.chunk_size - self._n)
            self._f.write(view[:room])
            self._h.update(view[:room])
            self._n += room
            view = view[room:]
        return len(data)

    def close(self):
        if self._f is None and not self.parts:
            self._open_next()
        self._close_current()


class _HashSink(object):
    def __init__(self):
        self.total = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.total.update(data)
        self.size += len(data)
        return len(data)


def _created_epoch(manifest):
    try:
        return calendar.timegm(time.strptime(manifest.get('created', ''), '%Y-%m-%dT%H:%M:%SZ'))
    except (ValueError, TypeError, OverflowError):
        return 0


def _write_tar(bundle_dir, fileobj, top, mtime):
    """Stream ``bundle_dir`` as a deterministic tar: manifest first, sorted, root-owned, fixed mtime."""
    rels = [r for r in (MANIFEST, SIGNATURE) if os.path.isfile(os.path.join(bundle_dir, r))] + walk_files(bundle_dir)
    done = set()
    tar = tarfile.open(fileobj=fileobj, mode='w|', format=tarfile.PAX_FORMAT)
    try:
        def _info(name, kind, size=0, mode=0o644):
            info = tarfile.TarInfo('%s/%s' % (top, name) if name else top)
            info.type = kind
            info.size = size
            info.mode = mode
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ''
            return info
        tar.addfile(_info('', tarfile.DIRTYPE, mode=0o755))
        for rel in rels:
            parts = rel.split('/')[:-1]
            for i in range(1, len(parts) + 1):
                d = '/'.join(parts[:i])
                if d not in done:
                    done.add(d)
                    tar.addfile(_info(d, tarfile.DIRTYPE, mode=0o755))
            full = os.path.join(bundle_dir, rel)
            st = os.stat(full)
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            with open(full, 'rb') as f:
                tar.addfile(_info(rel, tarfile.REGTYPE, st.st_size, mode), f)
    finally:
        tar.close()


def _parts_path(tar_path):
    return tar_path + '.parts.json'


def _existing_pack(tar_path):
    """What a previous pack left at ``tar_path``: ``{'sha256', 'size', 'parts'}`` or None."""
    parts_path = _parts_path(tar_path)
    if os.path.isfile(parts_path):
        try:
            data, _raw = _load_json(parts_path, 'chunk list')
            return {'sha256': data.get('sha256'), 'size': data.get('size'), 'parts': data.get('parts')}
        except BundleError:
            return None
    if os.path.isfile(tar_path):
        sha, size = sha256_file(tar_path)
        return {'sha256': sha, 'size': size, 'parts': None}
    return None


def pack(bundle_dir, tar_path, chunk_size=None, check_mode=False):
    """Pack ``bundle_dir`` into ``tar_path`` (or ``tar_path.000``, ``.001``... of ``chunk_size`` bytes).

    The tar is deterministic, so packing an unchanged bundle gives the same
    bytes and reports ``changed=False``. Chunks come with ``tar_path.parts.json``
    listing each chunk's size and sha256 (written last). Returns
    ``{'changed', 'tar', 'size', 'sha256', 'parts'}``.
    """
    manifest, _raw = read_manifest(bundle_dir)
    if chunk_size is not None and chunk_size <= 0:
        raise BundleError('chunk_size must be a positive number of bytes, got %r' % chunk_size)
    top = os.path.basename(os.path.normpath(bundle_dir))
    mtime = _created_epoch(manifest)
    before = _existing_pack(tar_path)
    if check_mode:
        sink = _HashSink()
        _write_tar(bundle_dir, sink, top, mtime)
        sha = sink.total.hexdigest()
        changed = before is None or before['sha256'] != sha or bool(before['parts']) != bool(chunk_size)
        return {'changed': changed, 'tar': tar_path, 'size': sink.size, 'sha256': sha, 'parts': None}

    parent = os.path.dirname(os.path.abspath(tar_path))
    base_name = os.path.basename(tar_path)
    tmp = tmp_sibling(tar_path, directory=True)
    try:
        writer = _ChunkWriter(tmp, base_name, chunk_size)
        try:
            _write_tar(bundle_dir, writer, top, mtime)
        finally:
            writer.close()
        sha = writer.total.hexdigest()
        parts = writer.parts if chunk_size else None
        result = {'tar': tar_path, 'size': writer.size, 'sha256': sha, 'parts': parts}
        if before is not None and before['sha256'] == sha and bool(before['parts']) == bool(chunk_size) \
                and (not chunk_size or before['parts'] == parts) \
                and all(os.path.isfile(os.path.join(parent, p['name'])) for p in (parts or [])):
            result['changed'] = False
            return result
        if chunk_size:
            for part in parts:
                os.rename(os.path.join(tmp, part['name']), os.path.join(parent, part['name']))
            index = len(parts)
            while os.path.isfile('%s.%03d' % (tar_path, index)):  # chunks left by an earlier, larger pack
                os.unlink('%s.%03d' % (tar_path, index))
                index += 1
            if os.path.isfile(tar_path):
                os.unlink(tar_path)
            atomic_write(_parts_path(tar_path), dumps({
                'format': FORMAT, 'name': base_name, 'size': writer.size, 'sha256': sha,
                'chunk_size': chunk_size, 'parts': parts}))
        else:
            if os.path.isfile(_parts_path(tar_path)):
                os.unlink(_parts_path(tar_path))
            os.rename(os.path.join(tmp, '%s.000' % base_name), tar_path)
            index = 0
            while os.path.isfile('%s.%03d' % (tar_path, index)):
                os.unlink('%s.%03d' % (tar_path, index))
                index += 1
        result['changed'] = True
        return result
    finally:
        _remove(tmp)


def resolve_pack(path):
    """Map a tar, its first chunk or its parts.json to ``(tar_path, parts_or_None)``."""
    if path.endswith('.parts.json'):
        tar_path = path[:-len('.parts.json')]
    else:
        m = CHUNK_RE.match(path)
        tar_path = m.group('base') if m and os.path.isfile(_parts_path(m.group('base'))) else path
    parts_path = _parts_path(tar_path)
    if os.path.isfile(parts_path):
        data, _raw = _load_json(parts_path, 'chunk list')
        parts = data.get('parts') if isinstance(data, dict) else None
        if not isinstance(parts, list) or not parts:
            raise BundleError('chunk list %s: parts: expected a non-empty list' % parts_path)
        for i, part in enumerate(parts):
            if (not isinstance(part, dict) or part.get('name') != '%s.%03d' % (os.path.basename(tar_path), i)
                    or not isinstance(part.get('size'), int) or not _is_str(part.get('sha256'))):
                raise BundleError('chunk list %s: parts[%d]: expected {name: %s.%03d, size, sha256}, actual %r' % (
                    parts_path, i, os.path.basename(tar_path), i, part))
        return tar_path, parts
    m = CHUNK_RE.match(path)
    if m:
        raise BundleError('%s looks like a chunk but %s is missing' % (path, _parts_path(m.group('base'))))
    if not os.path.isfile(path):
        raise BundleError('%s does not exist' % path)
    return tar_path, None


def check_chunks(tar_path, parts, progress=None):
    """Return problems with the chunks of ``tar_path`` (missing, size, sha256 naming expected/actual)."""
    problems = []
    parent = os.path.dirname(os.path.abspath(tar_path))
    for part in parts:
        full = os.path.join(parent, part['name'])
        if not os.path.isfile(full):
            problems.append('missing chunk: %s' % full)
            continue
        size = os.path.getsize(full)
        if size != part['size']:
            problems.append('chunk %s: size expected %d bytes, actual %d bytes' % (full, part['size'], size))
            continue
        actual, _size = sha256_file(full, progress)
        if actual != part['sha256']:
            problems.append('chunk %s: sha256 expected %s, actual %s' % (full, part['sha256'], actual))
    return problems


def unpack(tar_or_first_chunk, dest_dir, progress=None):
    """Unpack a bundle tar (or its chunks) into ``dest_dir`` through ``_safetar``.

    Chunks are checked against ``.parts.json`` first. The tar is extracted into
    a temporary sibling of ``dest_dir``; the single top directory holding
    ``manifest.json`` (or the root itself) is renamed to ``dest_dir``. Returns
    ``dest_dir``. Unsafe members and truncated/corrupt tars raise
    :class:`BundleError` naming the tar and the member.
    """
    from ansible_collections.ferry.airgap.plugins.module_utils import _safetar

    tar_path, parts = resolve_pack(tar_or_first_chunk)
    if parts is not None:
        problems = check_chunks(tar_path, parts, progress)
        if problems:
            raise BundleError('chunked tar %s is damaged: %s' % (tar_path, '; '.join(problems)))
    tmp = tmp_sibling(dest_dir, directory=True)
    try:
        source = tar_path
        if parts is not None:
            # _safetar reads a path: join the checked chunks in the temporary directory
            source = os.path.join(tmp, '.joined.tar')
            parent = os.path.dirname(os.path.abspath(tar_path))
            with open(source, 'wb') as out:
                for part in parts:
                    with open(os.path.join(parent, part['name']), 'rb') as f:
                        shutil.copyfileobj(f, out, BUF_SIZE)
        extract_dir = os.path.join(tmp, 'x')
        os.mkdir(extract_dir)
        try:
            _safetar.safe_extract(source, extract_dir)
        except ValueError as e:  # UnsafeTarError is a ValueError too
            raise BundleError('cannot unpack %s: %s' % (tar_or_first_chunk, e))
        if parts is not None:
            os.unlink(source)
        if os.path.isfile(os.path.join(extract_dir, MANIFEST)):
            root = extract_dir
        else:
            entries = os.listdir(extract_dir)
            if len(entries) != 1 or not os.path.isfile(os.path.join(extract_dir, entries[0], MANIFEST)):
                raise BundleError('%s does not hold a bundle: expected %s at its root or in a single top '
                                  'directory, found %s' % (tar_or_first_chunk, MANIFEST, sorted(entries)[:10]))
            root = os.path.join(extract_dir, entries[0])
        os.chmod(root, 0o755)
        replace_dir(root, dest_dir)
    finally:
        _remove(tmp)
    return dest_dir


def describe_source(path):
    """Classify a verify source: ``'dir'``, ``'tar'`` (a tar, a chunk or a parts.json) or raise."""
    if os.path.isdir(path):
        return 'dir'
    if os.path.isfile(path) or os.path.isfile(_parts_path(path)):
        return 'tar'
    raise BundleError('%s does not exist' % path)
