# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bundle specs: what a build declares (artifacts, images, apps, signing), checked before anything is fetched."""

import json
import os
import posixpath
import re

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE
from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES
from ansible_collections.ferry.airgap.plugins.module_utils._oci.compress import COMPRESSIONS, DEFAULT_COMPRESSION
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    ARTIFACT_ARCHES, DEFAULT_NAMESPACE, SAFE_NAME_RE, BundleError, SpecError, is_str, url_path)


_TOP_KEYS = ('name', 'version', 'arches', 'artifacts', 'images', 'images_compression', 'apps', 'signing')
_ARTIFACT_KEYS = ('name', 'arch', 'src', 'sha256', 'dest', 'version')
# An artifact's version as its project writes it: 1.7.18, v1.33.1+k3s1, 2.4.0-rc.1.
_VERSION_RE = re.compile(r'^v?[0-9][0-9A-Za-z.+~_-]{0,63}$')
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
    if not is_str(value):
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
    if not is_str(value):
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


def file_name_of(src):
    if '://' in src:
        return posixpath.basename(url_path(src))
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
    spec['versions'] = {}  # {artifact name: {arch: version}} of the artifacts that declare one
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
        version = _opt_str(item, 'version', path)
        if version is not None and not _VERSION_RE.match(version):
            raise SpecError(path + '.version', 'must be a version such as 1.7.18 or v1.33.1+k3s1, got %r' % version)
        art['version'] = version
        if version is not None:
            spec['versions'].setdefault(art['name'], {})[art['arch']] = version
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
            if is_str(reg):
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
        # A ref may be declared once per arch (e.g. k3s's airgap archive of each arch): the declarations
        # make one multi-platform image (sync_images merges them). Otherwise a ref is declared once.
        for j, other in seen.get(img['ref'], []):
            if not (img.get('arch') and other.get('arch') and img['arch'] != other['arch']):
                raise SpecError(path + '.ref', 'duplicate image %r (also images[%d]); declare a ref more than once '
                                'only with a different arch on each' % (img['ref'], j))
        seen.setdefault(img['ref'], []).append((i, img))
        spec['images'].append(img)

    compression = data.get('images_compression')
    if compression is None:
        compression = DEFAULT_COMPRESSION
    elif not is_str(compression) or compression not in COMPRESSIONS:
        raise SpecError('images_compression', 'unknown layer compression %r (choose one of: %s)' % (
            compression, ', '.join(COMPRESSIONS)))
    spec['images_compression'] = compression

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
