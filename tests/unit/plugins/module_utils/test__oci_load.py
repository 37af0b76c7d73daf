# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_oci's loading helpers: containerd-style platform matching, per-platform plans, the streamed layout tar."""

import hashlib
import io
import json
import tarfile

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._digest import BUF_SIZE, canonical_json
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import MT_OCI_INDEX, REF_ANNOTATION, OciError
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._platform import format_platform, normalize_platform
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import BlobMismatchError, chain_id, layout_tar, platform_plan

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import (
    add_manifest, build_store, corrupt, layer_pair, manifest_of, platform_blobs, random_layer)

WEB = 'registry.ferry.local/demo/web:1.0'
API = 'registry.ferry.local/demo/api:2.1'


@pytest.mark.parametrize('given, expected', [
    ('linux/amd64', ('linux', 'amd64', '')),
    ('linux/x86_64', ('linux', 'amd64', '')),
    ('Linux/AMD64/v1', ('linux', 'amd64', '')),
    ('linux/amd64/v3', ('linux', 'amd64', 'v3')),
    ('linux/arm64', ('linux', 'arm64', '')),
    ('linux/arm64/v8', ('linux', 'arm64', '')),
    ('linux/aarch64/8', ('linux', 'arm64', '')),
    ('linux/arm64/v9', ('linux', 'arm64', 'v9')),
    ('linux/arm', ('linux', 'arm', 'v7')),
    ('linux/armhf', ('linux', 'arm', 'v7')),
    ('linux/arm/6', ('linux', 'arm', 'v6')),
    ('linux/i386', ('linux', '386', '')),
    ({'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'}, ('linux', 'arm64', '')),
    ({'os': 'linux', 'architecture': 'amd64'}, ('linux', 'amd64', '')),
])
def test_normalize_platform_like_containerd(given, expected):
    assert normalize_platform(given) == expected


def test_format_platform():
    assert format_platform(('linux', 'arm', 'v7')) == 'linux/arm/v7'
    assert format_platform(normalize_platform('linux/arm64/v8')) == 'linux/arm64'


def test_chain_id():
    a, b, c = ('sha256:' + hashlib.sha256(x).hexdigest() for x in (b'a', b'b', b'c'))
    ab = 'sha256:' + hashlib.sha256(('%s %s' % (a, b)).encode()).hexdigest()
    abc = 'sha256:' + hashlib.sha256(('%s %s' % (ab, c)).encode()).hexdigest()
    assert chain_id([a]) == a
    assert chain_id([a, b, c]) == abc
    assert chain_id([]) is None


@pytest.fixture
def store(tmp_path):
    base = random_layer('base', 2000)
    return build_store(tmp_path / 'store', {
        WEB: [('amd64', [base, random_layer('web', 1000)], None), ('arm64', [base, random_layer('web', 900)], 'v8')],
        API: [('amd64', [base], None)],
    })


def test_platform_plan_of_an_index(store):
    plan = platform_plan(store, WEB, 'linux/arm64')
    top = store.entry(WEB)
    arm = [m for m in store.read_json(top['digest'])['manifests'] if m['platform']['architecture'] == 'arm64'][0]
    assert plan['top'] == top and plan['manifests'] == [arm]
    assert [b[2] for b in plan['blobs']] == ['index', 'manifest', 'config', 'layer', 'layer']
    assert dict((d, s) for d, s, k in plan['blobs']) == platform_blobs(store, WEB, 'arm64')
    assert plan['platforms'] == ['linux/amd64', 'linux/arm64']
    config = store.read_json(manifest_of(store, WEB, 'arm64')['config']['digest'])
    assert plan['chain_id'] == chain_id(config['rootfs']['diff_ids'])


def test_platform_plan_of_a_single_manifest(store):
    plan = platform_plan(store, API, 'linux/amd64')
    assert [b[2] for b in plan['blobs']] == ['manifest', 'config', 'layer']
    assert dict((d, s) for d, s, k in plan['blobs']) == platform_blobs(store, API, 'amd64')
    with pytest.raises(OciError, match=r'^image %s has no platform linux/arm64 \(it has: linux/amd64\)$' % API):
        platform_plan(store, API, 'linux/arm64')


def test_platform_plan_without_platform_fields_reads_the_config(tmp_path):
    store = ImageStore(str(tmp_path / 's'))
    store.init()
    desc = add_manifest(store, 'arm64', [random_layer('x', 100)], variant='v8')
    del desc['platform']
    index = canonical_json({'schemaVersion': 2, 'mediaType': MT_OCI_INDEX, 'manifests': [desc]})
    digest, size = store.put_bytes(index)
    entries = store._load_index()['manifests']
    entries.append({'mediaType': MT_OCI_INDEX, 'digest': digest, 'size': size,
                    'annotations': {REF_ANNOTATION: WEB}})
    assert platform_plan(store, WEB, 'linux/arm64/v8')['manifests'] == [desc]
    with pytest.raises(OciError, match=r'has no platform linux/amd64 \(it has: linux/arm64\)'):
        platform_plan(store, WEB, 'linux/amd64')


def test_platform_plan_missing_ref_and_corrupt_document(store):
    with pytest.raises(OciError, match=r"image 'nope:1' is not in store '.*' \(it has: %s, %s\)" % (API, WEB)):
        platform_plan(store, 'nope:1', 'linux/amd64')
    manifest = store.entry(API)['digest']
    corrupt(store, manifest, offset=5)
    with pytest.raises(BlobMismatchError) as info:
        platform_plan(store, API, 'linux/amd64')
    assert str(info.value).startswith("blob %s (index or manifest of %s) in store '%s' is corrupt: expected %s, actual" % (
        manifest, API, store.path, manifest))


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:') as tar:
        return dict((m.name, tar.extractfile(m).read()) for m in tar.getmembers())


def test_layout_tar_streams_the_layout(store):
    plan = platform_plan(store, WEB, 'linux/amd64')
    index = {'schemaVersion': 2, 'manifests': [plan['top']]}
    sent = []
    chunks = list(layout_tar(store, index, plan['blobs'], progress=sent.append))
    data = b''.join(chunks)
    assert len(data) % 512 == 0
    found = members(data)
    assert json.loads(found.pop('oci-layout').decode()) == {'imageLayoutVersion': '1.0.0'}
    assert json.loads(found.pop('index.json').decode()) == index
    assert sorted(found) == sorted('blobs/sha256/' + d[7:] for d, s, k in plan['blobs'])
    for name, blob in found.items():
        assert 'sha256:' + hashlib.sha256(blob).hexdigest() == 'sha256:' + name.rsplit('/', 1)[1]
    assert sent == [s for d, s, k in plan['blobs']]


def test_layout_tar_stops_before_a_corrupt_blob_is_complete(store):
    plan = platform_plan(store, WEB, 'linux/amd64')
    bad = [b for b in plan['blobs'] if b[2] == 'layer'][-1]
    corrupt(store, bad[0], offset=10)
    out = []
    sent = []
    with pytest.raises(BlobMismatchError) as info:
        for chunk in layout_tar(store, {'manifests': []}, plan['blobs'], progress=sent.append,
                                describe=lambda d: 'blob %s (test)' % d):
            out.append(chunk)
    assert info.value.digest == bad[0] and info.value.actual.startswith('sha256:') and info.value.actual != bad[0]
    assert str(info.value) == "blob %s (test) in store '%s' is corrupt: expected %s, actual %s" % (
        bad[0], store.path, bad[0], info.value.actual)
    assert len(sent) == len(plan['blobs']) - 1
    data = b''.join(out)
    assert len(data) % 512 == 0  # ends right after the header: the member's data never came
    with pytest.raises(tarfile.ReadError):
        members(data)


def test_layout_tar_size_mismatch_and_empty_blob(tmp_path):
    store = ImageStore(str(tmp_path / 's'))
    store.init()
    digest, size = store.put_bytes(b'0123456789')
    with open(store.blob_path(digest), 'ab') as fh:
        fh.write(b'more')
    out = []
    with pytest.raises(BlobMismatchError, match='expected 10 bytes, found 14'):
        for chunk in layout_tar(store, {}, [(digest, size)]):
            out.append(chunk)
    assert len(b''.join(out)) % 512 != 0  # cut inside a block
    # an empty blob whose digest is wrong: its member is complete after the header, so the cut follows
    empty = 'sha256:' + 'e' * 64
    with open(store.blob_path(empty), 'wb'):
        pass
    out = []
    with pytest.raises(BlobMismatchError):
        for chunk in layout_tar(store, {}, [(empty, 0)]):
            out.append(chunk)
    assert len(b''.join(out)) % 512 != 0
    with pytest.raises(OciError, match='cannot be read'):
        list(layout_tar(store, {}, [('sha256:' + 'a' * 64, 3)]))


def test_layout_tar_of_a_big_blob_is_chunked(tmp_path):
    store = ImageStore(str(tmp_path / 's'))
    store.init()
    raw, gz = layer_pair({'big': b'x' * (3 * BUF_SIZE + 5)})
    digest, size = store.put_bytes(raw)
    chunks = list(layout_tar(store, {}, [(digest, size)]))
    assert max(len(c) for c in chunks) <= BUF_SIZE + 512
    assert members(b''.join(chunks))['blobs/sha256/' + digest[7:]] == raw
