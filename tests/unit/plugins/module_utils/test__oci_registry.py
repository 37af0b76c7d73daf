# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_oci pulling from registries on 127.0.0.1.

* Debian's real registry (``docker-registry``, package docker-registry) with
  htpasswd Basic auth (``htpasswd`` from apache2-utils); a two-platform image is
  pushed by test_support.images.push_image.
* A fake registry behind a Bearer token service (http.server) for the token
  flow, docker media types and blob redirects.
"""

import base64
import json
import os
import threading

import pytest

from ansible.module_utils.six.moves.BaseHTTPServer import BaseHTTPRequestHandler, HTTPServer
from ansible.module_utils.six.moves.socketserver import ThreadingMixIn
from ansible.module_utils.six.moves.urllib.parse import parse_qs, urlparse

from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (

    MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST, OciError, RegistryError)

from ansible_collections.ferry.airgap.plugins.module_utils._oci.registry import pull_image
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import (
    Image, digest, dumps, index_of, layer, push_image, push_manifest, store_files)
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.registry import AUTH, PASSWORD, USER

pytestmark = pytest.mark.integration

TARGET = 'registry.ferry.local/demo/web:1.0'


@pytest.fixture(scope='module')
def pushed(registry):
    """Two-platform image demo/web:1.0 (OCI index) and single-platform demo/web:amd64-only."""
    amd = Image('x86_64', layers=[layer({'base': b'b' * 4096}), layer({'app': b'amd'})])
    arm = Image('aarch64', layers=[layer({'base': b'b' * 4096}), layer({'app': b'arm'})], variant='v8')
    for image in (amd, arm):
        push_image(registry, 'demo/web', image, AUTH)
    index = index_of([amd, arm])
    push_manifest(registry, 'demo/web', '1.0', index, MT_OCI_INDEX, AUTH)
    push_manifest(registry, 'demo/web', 'amd64-only', amd.manifest(), MT_OCI_MANIFEST, AUTH)
    return {'amd': amd, 'arm': arm, 'index': index}


def pull(tmp_path, ref, **kwargs):
    store = ImageStore(str(tmp_path / 'store'), dry_run=kwargs.pop('dry_run', False))
    manifests = pull_image(store, ref, **kwargs)
    store.set_ref(TARGET, manifests)
    return store, manifests


def test_pull_two_platforms_with_basic_auth(tmp_path, registry, pushed):
    store, manifests = pull(tmp_path, registry + '/demo/web:1.0', username=USER, password=PASSWORD, timeout=10)
    amd, arm = pushed['amd'], pushed['arm']
    assert [(m['digest'], m['platform']) for m in manifests] == [
        (digest(amd.manifest()), {'os': 'linux', 'architecture': 'amd64'}),
        (digest(arm.manifest()), {'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'})]
    assert store.images() == [{'ref': TARGET, 'digest': store.entry(TARGET)['digest'], 'platforms': {
        'linux/amd64': digest(amd.manifest()), 'linux/arm64': digest(arm.manifest())}}]
    assert store.verify() == []
    shared = amd.layers[0]
    assert arm.layers[0] == shared
    blobs = amd.layers + arm.layers + [amd.config, arm.config, amd.manifest(), arm.manifest()]
    expected = set(digest(b) for b in blobs)
    assert store.blob_digests() == expected | {store.entry(TARGET)['digest']}
    unique_bytes = sum(len(b) for b in set(amd.layers + arm.layers + [amd.config, arm.config]))
    assert store.bytes_written == unique_bytes + len(amd.manifest()) + len(arm.manifest()) + store.entry(
        TARGET)['size']
    assert store.bytes_skipped == len(shared)


def test_pull_one_arch_and_dry_run(tmp_path, registry, pushed):
    ref = registry + '/demo/web:1.0'
    dry, dry_manifests = pull(tmp_path, ref, arches=['aarch64'], username=USER, password=PASSWORD, dry_run=True)
    assert not (tmp_path / 'store').exists()
    store, manifests = pull(tmp_path, ref, arches=['aarch64'], username=USER, password=PASSWORD)
    assert manifests == dry_manifests
    assert [m['digest'] for m in manifests] == [digest(pushed['arm'].manifest())]
    assert store.entry(TARGET)['mediaType'] == MT_OCI_MANIFEST
    assert dry.images() == store.images()
    assert digest(pushed['amd'].layers[1]) not in store.blob_digests()


def test_pull_without_or_with_wrong_credentials(tmp_path, registry, pushed):
    with pytest.raises(RegistryError) as err:
        pull(tmp_path, registry + '/demo/web:1.0')
    assert 'requires authentication' in str(err.value) and registry in str(err.value)
    assert 'demo/web:1.0' in str(err.value)
    with pytest.raises(RegistryError) as err:
        pull(tmp_path, registry + '/demo/web:1.0', username=USER, password='wrong')
    assert 'authentication failed' in str(err.value) and USER in str(err.value)
    assert store_files(tmp_path / 'store') == []


def test_missing_arch_and_missing_tag(tmp_path, registry, pushed):
    ref = registry + '/demo/web:amd64-only'
    with pytest.raises(OciError) as err:
        pull(tmp_path, ref, username=USER, password=PASSWORD)
    assert ref in str(err.value) and 'aarch64' in str(err.value)
    store, manifests = pull(tmp_path, ref, arches=['x86_64'], username=USER, password=PASSWORD)
    assert manifests[0]['digest'] == digest(pushed['amd'].manifest())
    with pytest.raises(RegistryError) as err:
        pull(tmp_path, registry + '/demo/web:nope', username=USER, password=PASSWORD)
    assert 'HTTP 404' in str(err.value) and 'manifests/nope' in str(err.value)


# ---------------------------------------------------------------- Bearer token flow (fake registry)

TOKEN = 'tok-123'


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code, body=b'', headers=None):
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlparse(self.path)
            auth = self.headers.get('Authorization')
            state['requests'].append((url.path, auth))
            if url.path == '/token':
                return self._token(url, auth)
            if url.path.startswith('/data/'):
                if auth:
                    return self._send(400, b'credentials forwarded to storage')
                return self._send(200, state['blobs'][url.path[6:]])
            if auth != 'Bearer ' + TOKEN:
                challenge = 'Bearer realm="http://127.0.0.1:%d/token",service="fake",scope="repository:demo/web:pull"'
                return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                                  {'WWW-Authenticate': challenge % state['port']})
            kind, ref = url.path.split('/')[-2:]
            if kind == 'manifests':
                body, media_type = state['manifests'][ref]
                return self._send(200, body, {'Content-Type': media_type, 'Docker-Content-Digest': digest(body)})
            return self._send(307, b'', {'Location': '/data/' + ref})

        def _token(self, url, auth):
            expected = 'Basic ' + base64.b64encode(('%s:%s' % (USER, PASSWORD)).encode()).decode()
            if auth != expected:
                return self._send(401, b'{"details":"bad credentials"}')
            state['token_query'] = parse_qs(url.query)
            return self._send(200, json.dumps({'token': TOKEN}).encode())

    return Handler


@pytest.fixture
def bearer_registry():
    """A fake registry needing Bearer tokens, with docker media types and blob redirects."""
    amd = Image('x86_64', layers=[layer({'x': b'fake amd'})])
    arm = Image('aarch64', layers=[layer({'x': b'fake arm'})])
    state = {'requests': [], 'blobs': {}, 'manifests': {}}
    entries = []
    for image in (amd, arm):
        doc = json.loads(image.manifest())
        doc['mediaType'] = MT_DOCKER_MANIFEST
        doc['config']['mediaType'] = 'application/vnd.docker.container.image.v1+json'
        for item in doc['layers']:
            item['mediaType'] = 'application/vnd.docker.image.rootfs.diff.tar.gzip'
        body = dumps(doc)
        state['manifests'][digest(body)] = (body, MT_DOCKER_MANIFEST)
        for blob in image.layers + [image.config]:
            state['blobs'][digest(blob)] = blob
        entries.append({'mediaType': MT_DOCKER_MANIFEST, 'digest': digest(body), 'size': len(body),
                        'platform': {'os': 'linux', 'architecture': json.loads(image.config)['architecture']}})
    entries.append({'mediaType': MT_DOCKER_MANIFEST, 'digest': entries[0]['digest'], 'size': entries[0]['size'],
                    'platform': {'os': 'linux', 'architecture': 's390x'}})
    state['manifests']['1.0'] = (dumps({'schemaVersion': 2, 'mediaType': MT_DOCKER_LIST,
                                        'manifests': entries}), MT_DOCKER_LIST)
    server = _Server(('127.0.0.1', 0), make_handler(state))
    state['port'] = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever)
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_bearer_token_flow_docker_types_and_redirects(tmp_path, bearer_registry):
    ref = '127.0.0.1:%d/demo/web:1.0' % bearer_registry['port']
    store, manifests = pull(tmp_path, ref, username=USER, password=PASSWORD, timeout=10)
    assert bearer_registry['token_query'] == {'service': ['fake'], 'scope': ['repository:demo/web:pull']}
    assert [m['mediaType'] for m in manifests] == [MT_DOCKER_MANIFEST] * 2
    assert sorted(store.images()[0]['platforms']) == ['linux/amd64', 'linux/arm64']
    assert store.verify() == []
    data_requests = [auth for path, auth in bearer_registry['requests'] if path.startswith('/data/')]
    assert len(data_requests) == 4 and data_requests == [None] * 4


def test_bearer_token_refused_without_credentials(tmp_path, bearer_registry):
    ref = '127.0.0.1:%d/demo/web:1.0' % bearer_registry['port']
    with pytest.raises(RegistryError) as err:
        pull(tmp_path, ref)
    assert 'token service http://127.0.0.1:%d/token refused anonymous' % bearer_registry['port'] in str(err.value)
    assert ref in str(err.value)
    assert not os.path.exists(str(tmp_path / 'store'))
