# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Images from OCI distribution (v2) registries: token and basic auth, redirects, digests checked."""

import base64
import contextlib
import re
import socket
import ssl

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible.module_utils.six.moves.urllib.request import (
    HTTPRedirectHandler, HTTPSHandler, Request, build_opener)

from ansible_collections.ferry.airgap.plugins.module_utils._digest import HEX64_RE, sha256_digest
from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (
    MAX_DOCUMENT, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST, OciError, RegistryError,
    check_digest, descriptor, doc_media_type, loads)
from ansible_collections.ferry.airgap.plugins.module_utils._oci.copy import copy_image

_LOOPBACK = ('127.0.0.1', 'localhost', '::1')


# ---------------------------------------------------------------- registries

def parse_ref(ref):
    """(registry host, repository, tag, digest) of an image reference."""
    name, dummy, digest = ref.partition('@')
    tag = None
    slash = name.rfind('/')
    if ':' in name[slash + 1:]:
        name, tag = name.rsplit(':', 1)
    parts = name.split('/', 1)
    if len(parts) == 2 and ('.' in parts[0] or ':' in parts[0] or parts[0] == 'localhost'):
        host, repo = parts
    else:
        host, repo = 'docker.io', name
    if host == 'docker.io':
        host = 'registry-1.docker.io'
        if '/' not in repo:
            repo = 'library/' + repo
    if not repo or not re.match(r'^[a-z0-9]+(?:[._/-]+[a-z0-9]+)*$', repo) or (digest and not HEX64_RE.match(
            digest.partition(':')[2])):
        raise OciError("invalid image reference '%s'" % ref)
    return host, repo, tag or (None if digest else 'latest'), digest or None


def parse_www_authenticate(header):
    """('bearer'|'basic', {param: value}) of a WWW-Authenticate header."""
    scheme, dummy, rest = (header or '').strip().partition(' ')
    params = dict((k.lower(), v or q) for k, v, q in
                  re.findall(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))', rest))
    return scheme.lower(), params


def _is_loopback(host):
    hostname = host.rsplit(':', 1)[0] if not host.startswith('[') else host[1:].split(']')[0]
    return hostname in _LOOPBACK


class _RedirectHandler(HTTPRedirectHandler):
    """Follow 308 too (blob downloads may be redirected to a storage backend)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if code == 308:
            code = 307
        return HTTPRedirectHandler.redirect_request(self, req, fp, code, msg, headers, newurl)

    http_error_308 = HTTPRedirectHandler.http_error_302


class RegistryClient(object):
    """Minimal OCI distribution (v2) client: GET manifests and blobs with Basic/Bearer auth."""

    def __init__(self, host, repository, ref, username=None, password=None, insecure=False,
                 ca_file=None, timeout=60):
        scheme = 'http' if insecure or _is_loopback(host) else 'https'
        self.url = '%s://%s' % (scheme, host)
        self.repository = repository
        self.ref = ref
        self.username, self.password = username, password
        self.insecure = insecure
        self.timeout = timeout
        self._auth = None
        context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._opener = build_opener(HTTPSHandler(context=context), _RedirectHandler())

    def _open(self, url, headers, auth=None):
        req = Request(url, headers=headers)
        if auth:
            req.add_unredirected_header('Authorization', auth)
        try:
            return self._opener.open(req, timeout=self.timeout)
        except HTTPError:
            raise
        except (URLError, socket.timeout, ssl.SSLError, OSError) as exc:
            reason = getattr(exc, 'reason', exc)
            raise RegistryError('cannot reach registry %s for %s: %s (timeout %ss)' % (
                self.url, self.ref, reason, self.timeout))

    def get(self, path, accept=None):
        """Response of GET /v2/<repository>/<path>, authenticating once on 401."""
        url = '%s/v2/%s/%s' % (self.url, self.repository, path)
        headers = {'Accept': ', '.join(accept)} if accept else {}
        for attempt in (1, 2):
            try:
                return self._open(url, headers, self._auth)
            except HTTPError as exc:
                if exc.code == 401 and attempt == 1 and self._authenticate(exc):
                    continue
                raise self._http_error(exc, path)

    def _http_error(self, exc, path):
        body = _read_text(exc)
        if exc.code == 401:
            if self.username is None:
                return RegistryError('registry %s requires authentication for %s (HTTP 401): give username and password'
                                     % (self.url, self.ref))
            return RegistryError('authentication failed at registry %s for %s as %s (HTTP 401): %s' % (
                self.url, self.ref, self.username, body))
        return RegistryError('registry %s answered HTTP %d for %s (%s): %s' % (self.url, exc.code, path, self.ref, body))

    def _authenticate(self, exc):
        scheme, params = parse_www_authenticate(exc.headers.get('WWW-Authenticate'))
        _read_text(exc)
        if scheme == 'basic' and self.username is not None:
            self._auth = _basic_auth(self.username, self.password)
            return True
        if scheme == 'bearer' and params.get('realm'):
            self._auth = 'Bearer ' + self._token(params)
            return True
        return False

    def _token(self, params):
        realm = params['realm']
        scheme, dummy, rest = realm.partition('://')
        if scheme != 'https' and not (scheme == 'http' and (self.insecure or _is_loopback(rest.split('/')[0]))):
            raise RegistryError('registry %s sent token realm %s; refusing a non-https token service' % (
                self.url, realm))
        query = dict((k, params[k]) for k in ('service', 'scope') if params.get(k))
        query.setdefault('scope', 'repository:%s:pull' % self.repository)
        url = realm + ('&' if '?' in realm else '?') + urlencode(query)
        auth = _basic_auth(self.username, self.password) if self.username is not None else None
        try:
            resp = self._open(url, {}, auth)
        except HTTPError as exc:
            raise RegistryError('token service %s refused %s for %s: HTTP %d %s' % (
                realm, self.username or 'anonymous', self.ref, exc.code, _read_text(exc)))
        with contextlib.closing(resp):
            doc = loads(resp.read(MAX_DOCUMENT), 'token answer of %s' % realm)
        token = doc.get('token') or doc.get('access_token') if isinstance(doc, dict) else None
        if not token:
            raise RegistryError('token service %s answered without a token for %s' % (realm, self.ref))
        return token


def _basic_auth(username, password):
    raw = ('%s:%s' % (username, password or '')).encode('utf-8')
    return 'Basic ' + base64.b64encode(raw).decode('ascii')


def _read_text(resp, limit=2048):
    try:
        return resp.read(limit).decode('utf-8', 'replace').strip()
    except Exception:
        return ''


class _ResponseReader(object):
    """A blob download whose read errors (timeouts, cut connections) become RegistryError."""

    def __init__(self, resp, client, digest):
        self._resp, self._client, self._digest = resp, client, digest

    def read(self, size=-1):
        try:
            return self._resp.read(size)
        except (OSError, socket.timeout, http_client.HTTPException) as exc:
            raise RegistryError('download of blob %s of %s from registry %s failed: %s' % (
                self._digest, self._client.ref, self._client.url, exc))

    def close(self):
        self._resp.close()


MANIFEST_ACCEPT = (MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST)


class _RegistrySource(object):
    """Documents and blobs of one repository of a registry."""

    def __init__(self, client):
        self.client = client
        self.name = 'registry %s' % client.url
        self._docs = {}

    def _read(self, path, accept=None):
        resp = self.client.get(path, accept)
        with contextlib.closing(resp):
            data = resp.read(MAX_DOCUMENT + 1)
            media_type = (resp.headers.get('Content-Type') or '').split(';')[0].strip()
            header_digest = resp.headers.get('Docker-Content-Digest')
        if len(data) > MAX_DOCUMENT:
            raise RegistryError('%s: %s is larger than %d bytes' % (self.name, path, MAX_DOCUMENT))
        return data, media_type, header_digest

    def top(self, reference):
        """Descriptor of the manifest or index a tag/digest points at."""
        data, media_type, header_digest = self._read('manifests/' + reference, MANIFEST_ACCEPT)
        digest = sha256_digest(data)
        for expected in (reference if reference.startswith('sha256:') else None, header_digest):
            if expected and expected != digest:
                raise OciError('digest mismatch for manifest %s of %s (%s): expected %s, got %s' % (
                    reference, self.client.ref, self.name, expected, digest))
        if media_type not in MANIFEST_ACCEPT:
            media_type = doc_media_type(loads(data, 'manifest %s of %s' % (reference, self.client.ref)))
        if media_type not in MANIFEST_ACCEPT:
            raise OciError('%s (%s): unsupported manifest media type %s' % (self.client.ref, self.name, media_type))
        self._docs[digest] = data
        return descriptor(media_type, digest, len(data))

    def read_doc(self, desc):
        digest = desc['digest']
        if digest not in self._docs:
            kind = 'manifests' if desc.get('mediaType') in MANIFEST_ACCEPT else 'blobs'
            data = self._read('%s/%s' % (kind, digest), MANIFEST_ACCEPT if kind == 'manifests' else None)[0]
            self._docs[digest] = check_digest(data, digest, '%s %s of %s (%s)' % (
                kind[:-1], digest, self.client.ref, self.name))
        return self._docs[digest]

    def open_blob(self, desc):
        return _ResponseReader(self.client.get('blobs/' + desc['digest']), self.client, desc['digest'])

    @staticmethod
    def order(descs):
        return descs


def pull_image(store, source_ref, arches=ARCHES, username=None, password=None,
               insecure=False, ca_file=None, timeout=60, layers=None):
    """Copy ``source_ref`` from its registry into ``store`` for every arch of ``arches``.

    Returns the platform manifest descriptors (for ImageStore.set_ref(ref, ...)).
    A requested arch missing from the image is an error naming the ref and arch.
    Every layer is kept as the registry holds it (an image pinned by digest keeps its digest);
    compressed ones are checked against the config's diff_ids through ``layers`` (a compress.LayerWriter).
    """
    host, repository, tag, digest = parse_ref(source_ref)
    client = RegistryClient(host, repository, source_ref, username, password, insecure, ca_file, timeout)
    source = _RegistrySource(client)
    top = source.top(digest or tag)
    return copy_image(store, source, top, source_ref, list(arches), strict_single=True, layers=layers,
                      compress_plain=False)
