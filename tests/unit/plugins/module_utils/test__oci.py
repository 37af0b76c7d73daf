# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_oci: the OCI image layout store and its archive importers (archives built in code)."""

import io
import json
import os
import tarfile

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._oci.archive import import_docker_archive, import_oci_archive
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import MT_OCI_INDEX, MT_OCI_MANIFEST, OciError, RegistryError
from ansible_collections.ferry.airgap.plugins.module_utils._oci.registry import parse_ref, parse_www_authenticate, pull_image
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import platform_plan
from ansible_collections.ferry.airgap.plugins.module_utils._oci.sync import import_spec, sync_images
from ansible_collections.ferry.airgap.plugins.module_utils._safetar import UnsafeTarError

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.net import free_port
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import (
    Image, digest, docker_legacy_entries, docker_new_entries, gzip_bytes, layer, oci_entries, store_files,
    write_tar)

REF = 'registry.ferry.local/demo/web:1.0'
BASE = layer({'bin/sh': b'#' * 5000, 'etc/os-release': b'ID=demo\n'})


def store_at(tmp_path, dry_run=False):
    return ImageStore(str(tmp_path / 'store'), dry_run=dry_run)


def legacy(tmp_path, name, images, compress=False):
    return write_tar(tmp_path / name, docker_legacy_entries(images), compress)


def blob_bytes(store, dig):
    with open(store.blob_path(dig), 'rb') as fh:
        return fh.read()


def test_legacy_docker_archive_becomes_oci_manifest(tmp_path):
    image = Image('x86_64', layers=[BASE, layer({'app': b'v1'})])
    path = legacy(tmp_path, 'web.tar', [image])
    store = store_at(tmp_path)
    manifests = import_docker_archive(store, path, REF)
    assert store.set_ref(REF, manifests) is True

    assert len(manifests) == 1
    assert manifests[0]['platform'] == {'os': 'linux', 'architecture': 'amd64'}
    assert manifests[0]['mediaType'] == MT_OCI_MANIFEST
    manifest = store.read_json(manifests[0]['digest'])
    assert manifest['config'] == {'mediaType': 'application/vnd.oci.image.config.v1+json',
                                  'digest': digest(image.config), 'size': len(image.config)}
    assert [(l['mediaType'], l['digest'], l['size']) for l in manifest['layers']] == [
        ('application/vnd.oci.image.layer.v1.tar', digest(data), len(data)) for data in image.layers]
    assert blob_bytes(store, digest(image.layers[1])) == image.layers[1]
    assert store.images() == [{'ref': REF, 'digest': manifests[0]['digest'],
                               'platforms': {'linux/amd64': manifests[0]['digest']}}]
    index = json.loads((tmp_path / 'store' / 'index.json').read_text())
    assert index['manifests'][0]['annotations'] == {
        'org.opencontainers.image.ref.name': REF, 'io.containerd.image.name': REF}
    assert json.loads((tmp_path / 'store' / 'oci-layout').read_text()) == {'imageLayoutVersion': '1.0.0'}
    assert store.verify() == []


def test_new_docker_archive_and_gzip_layer_detection(tmp_path):
    gz_layer = gzip_bytes(layer({'app': b'compressed'}))
    image = Image('aarch64', layers=[BASE, gz_layer], variant='v8')
    path = write_tar(tmp_path / 'new.tar', docker_new_entries([image]))
    store = store_at(tmp_path)
    manifests = import_docker_archive(store, path, REF, ['aarch64'])
    manifest = store.read_json(manifests[0]['digest'])
    assert [l['mediaType'] for l in manifest['layers']] == [
        'application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar+gzip']
    assert [l['digest'] for l in manifest['layers']] == [digest(BASE), digest(gz_layer)]
    assert manifests[0]['platform'] == {'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'}
    store.set_ref(REF, manifests)
    assert store.images()[0]['platforms'] == {'linux/arm64': manifests[0]['digest']}


def test_gzip_compressed_archive_and_image_selection_by_tag(tmp_path):
    web, api = Image(tags=['demo/web:1.0']), Image(tags=['demo/api:2.0'], layers=[layer({'api': b'1'})])
    path = legacy(tmp_path, 'two.tar.gz', [web, api], compress=True)
    store = store_at(tmp_path)
    manifests = import_docker_archive(store, path, 'registry.ferry.local/demo/api:2.0')
    assert store.read_json(manifests[0]['digest'])['config']['digest'] == digest(api.config)
    with pytest.raises(OciError) as err:
        import_docker_archive(store, path, 'registry.ferry.local/demo/other:1')
    assert 'holds 2 images' in str(err.value) and 'demo/web:1.0' in str(err.value)


def test_oci_archive_single_and_multi_platform(tmp_path):
    amd, arm = Image('x86_64'), Image('aarch64')
    single = write_tar(tmp_path / 'single.tar', oci_entries([amd]))
    multi = write_tar(tmp_path / 'multi.tar', oci_entries([amd, arm]))
    store = store_at(tmp_path)

    one = import_oci_archive(store, single, REF)
    assert one == [{'mediaType': MT_OCI_MANIFEST, 'digest': digest(amd.manifest()),
                    'size': len(amd.manifest()), 'platform': {'os': 'linux', 'architecture': 'amd64'}}]
    both = import_oci_archive(store, multi, REF)
    assert [m['digest'] for m in both] == [digest(amd.manifest()), digest(arm.manifest())]
    only_arm = import_oci_archive(store, multi, REF, ['aarch64'])
    assert [m['platform']['architecture'] for m in only_arm] == ['arm64']

    store.set_ref(REF, both)
    top = store.entry(REF)
    assert top['mediaType'] == MT_OCI_INDEX
    index = store.read_json(top['digest'])
    assert [(m['platform']['architecture'], m['digest']) for m in index['manifests']] == [
        ('amd64', digest(amd.manifest())), ('arm64', digest(arm.manifest()))]
    assert store.verify() == []


def test_oci_archive_missing_requested_arch(tmp_path):
    path = write_tar(tmp_path / 'multi.tar', oci_entries([Image('x86_64'), Image('x86_64', goarch='s390x')]))
    store = store_at(tmp_path)
    with pytest.raises(OciError) as err:
        import_oci_archive(store, path, REF, ['x86_64', 'aarch64'])
    assert REF in str(err.value) and 'aarch64' in str(err.value) and 'linux/s390x' in str(err.value)
    assert store_files(tmp_path / 'store') == []


def test_shared_layers_are_stored_once(tmp_path):
    web = Image(layers=[BASE, layer({'web': b'w' * 3000})], tags=['demo/web:1.0'])
    api = Image(layers=[BASE, layer({'api': b'a' * 2000})], tags=['demo/api:1.0'])
    store = store_at(tmp_path)
    web_m = import_docker_archive(store, legacy(tmp_path, 'web.tar', [web]), REF)
    first = store.bytes_written
    assert first == len(BASE) + len(web.layers[1]) + len(web.config) + web_m[0]['size']
    assert store.bytes_skipped == 0

    api_m = import_docker_archive(store, legacy(tmp_path, 'api.tar', [api]), 'r.local/demo/api:1.0')
    assert store.bytes_skipped == len(BASE)
    assert store.bytes_written - first == len(api.layers[1]) + len(api.config) + api_m[0]['size']
    blobs = store.blob_digests()
    assert blobs == {digest(BASE), digest(web.layers[1]), digest(api.layers[1]), digest(web.config),
                     digest(api.config), web_m[0]['digest'], api_m[0]['digest']}
    assert len(list((tmp_path / 'store' / 'blobs' / 'sha256').iterdir())) == 7


def test_multi_arch_ref_from_two_archives_and_idempotent_readd(tmp_path):
    amd = legacy(tmp_path, 'amd.tar', [Image('x86_64', layers=[BASE, layer({'app': b'amd'})])])
    arm = write_tar(tmp_path / 'arm.tar', docker_new_entries([Image('aarch64', layers=[layer({'app': b'arm'})])]))
    specs = [{'ref': REF, 'docker_archive': amd, 'arch': 'x86_64'}, {'ref': REF, 'docker_archive': arm}]
    store = store_at(tmp_path)
    assert sync_images(store, specs) == {'added': [REF], 'updated': []}
    images = store.images()
    assert sorted(images[0]['platforms']) == ['linux/amd64', 'linux/arm64']
    assert store.entry(REF)['mediaType'] == MT_OCI_INDEX
    index_json = (tmp_path / 'store' / 'index.json').read_bytes()
    files = store_files(tmp_path / 'store')

    again = store_at(tmp_path)
    assert sync_images(again, list(reversed(specs))) == {'added': [], 'updated': []}
    assert again.bytes_written == 0
    assert again.bytes_skipped == store.bytes_written
    assert again.images() == images
    assert (tmp_path / 'store' / 'index.json').read_bytes() == index_json
    assert store_files(tmp_path / 'store') == files


def test_readd_with_different_content_replaces_entry(tmp_path):
    store = store_at(tmp_path)
    sync_images(store, [{'ref': REF, 'docker_archive': legacy(tmp_path, 'v1.tar', [Image()])}])
    old = store.refs()[REF]
    v2 = legacy(tmp_path, 'v2.tar', [Image(layers=[layer({'app': b'v2'})])])
    assert sync_images(store, [{'ref': REF, 'docker_archive': v2}]) == {'added': [], 'updated': [REF]}
    assert store.refs()[REF] != old
    reread = json.loads((tmp_path / 'store' / 'index.json').read_text())
    assert [m['digest'] for m in reread['manifests']] == [store.refs()[REF]]


def test_same_platform_twice_for_one_ref_is_an_error(tmp_path):
    path = legacy(tmp_path, 'amd.tar', [Image()])
    store = store_at(tmp_path)
    with pytest.raises(OciError) as err:
        sync_images(store, [{'ref': REF, 'docker_archive': path}, {'ref': REF, 'docker_archive': path}])
    assert REF in str(err.value) and 'linux/amd64, linux/amd64' in str(err.value)


@pytest.mark.parametrize('bad', [
    ('../escape', b'x'),
    {'name': 'abs-link', 'type': tarfile.SYMTYPE, 'linkname': '/etc/passwd'},
])
def test_unsafe_member_in_docker_archive_leaves_store_unchanged(tmp_path, bad):
    store = store_at(tmp_path)
    sync_images(store, [{'ref': REF, 'docker_archive': legacy(tmp_path, 'ok.tar', [Image()])}])
    before = store_files(tmp_path / 'store')
    entries = docker_legacy_entries([Image(layers=[layer({'new': b'layer'})])])
    path = write_tar(tmp_path / 'bad.tar', entries[:3] + [bad] + entries[3:])
    with pytest.raises(UnsafeTarError) as err:
        sync_images(store_at(tmp_path), [{'ref': 'r.local/x:1', 'docker_archive': path}])
    name = bad[0] if isinstance(bad, tuple) else bad['name']
    assert "'%s'" % name in str(err.value) and path in str(err.value)
    assert store_files(tmp_path / 'store') == before
    assert not [f for f in before if '.tmp' in f]


def test_truncated_archive_is_a_clear_error(tmp_path):
    image = Image(layers=[layer({'big': bytes(bytearray(range(256))) * 200})])
    full = write_tar(tmp_path / 'full.tar', docker_legacy_entries([image]))
    with open(full, 'rb') as fh:
        data = fh.read()
    cut = tmp_path / 'cut.tar'
    cut.write_bytes(data[:len(data) // 2])
    store = store_at(tmp_path)
    with pytest.raises(ValueError) as err:
        import_docker_archive(store, str(cut), REF)
    assert str(cut) in str(err.value) and 'truncated or corrupt' in str(err.value)
    assert store_files(tmp_path / 'store') == []


def test_corrupt_blob_in_archive_is_refused(tmp_path):
    image = Image(layers=[BASE])
    entries = docker_new_entries([image])
    name = 'blobs/sha256/' + digest(BASE)[7:]
    tampered = BASE[:-1] + b'!'
    entries = [(n, tampered) if isinstance(e, tuple) and n == name else e
               for e, n in ((e, e[0] if isinstance(e, tuple) else e['name']) for e in entries)]
    path = write_tar(tmp_path / 'tampered.tar', entries)
    store = store_at(tmp_path)
    with pytest.raises(OciError) as err:
        import_docker_archive(store, path, REF)
    message = str(err.value)
    assert 'digest mismatch' in message and name in message
    assert 'expected %s, got %s' % (digest(BASE), digest(tampered)) in message
    assert not [f for f in store_files(tmp_path / 'store') if f.startswith('blobs/sha256/' + '.tmp')]
    assert digest(tampered) not in store.blob_digests()
    assert digest(BASE) not in store.blob_digests()


def test_legacy_layer_not_matching_diff_id_is_refused(tmp_path):
    image = Image(layers=[BASE])
    entries = docker_legacy_entries([image])
    entries = [(e[0], BASE + b'\0' * 512) if isinstance(e, tuple) and e[0].endswith('layer.tar') else e
               for e in entries]
    store = store_at(tmp_path)
    with pytest.raises(OciError) as err:
        import_docker_archive(store, write_tar(tmp_path / 'l.tar', entries), REF)
    assert 'expected %s, got %s' % (digest(BASE), digest(BASE + b'\0' * 512)) in str(err.value)
    assert store.blob_digests() == set()


def test_verify_reports_corrupt_missing_and_wrong_size_blobs(tmp_path):
    image = Image(layers=[BASE, layer({'app': b'x'})])
    store = store_at(tmp_path)
    sync_images(store, [{'ref': REF, 'docker_archive': legacy(tmp_path, 'a.tar', [image])}])
    assert store.verify() == []
    base_path = store.blob_path(digest(BASE))
    corrupted = b'X' + BASE[1:]
    with open(base_path, 'wb') as fh:
        fh.write(corrupted)
    problems = store.verify()
    assert problems == [{'ref': REF, 'digest': digest(BASE), 'expected': digest(BASE),
                         'actual': digest(corrupted), 'msg': problems[0]['msg']}]
    assert digest(corrupted) in problems[0]['msg'] and REF in problems[0]['msg']

    with open(base_path, 'wb') as fh:
        fh.write(BASE + b'extra')
    problems = store.verify()
    assert [(p['digest'], p['expected'], p['actual']) for p in problems][0] == (
        digest(BASE), '%d bytes' % len(BASE), '%d bytes' % (len(BASE) + 5))

    os.unlink(base_path)
    (tmp_path / 'store' / 'blobs' / 'sha256' / '.tmp-leftover').write_bytes(b'')
    problems = store.verify()
    assert [(p['ref'], p['digest'], p['actual']) for p in problems] == [
        (REF, digest(BASE), 'missing'), ('', '.tmp-leftover', '.tmp-leftover')]


def test_put_blob_checks_digest_and_size_and_leaves_no_temp_file(tmp_path):
    store = store_at(tmp_path)
    data = b'hello blob'
    with pytest.raises(OciError) as err:
        store.put_blob(lambda: io.BytesIO(data), digest(b'other'), len(data), 'test blob')
    assert 'expected %s, got %s' % (digest(b'other'), digest(data)) in str(err.value)
    with pytest.raises(OciError) as err:
        store.put_blob(lambda: io.BytesIO(data), digest(data), 99, 'test blob')
    assert 'expected 99 bytes, got %d' % len(data) in str(err.value)
    assert store_files(tmp_path / 'store') == ['index.json', 'oci-layout']
    assert store.put_blob(lambda: io.BytesIO(data)) == (digest(data), len(data))
    assert store.put_blob(lambda: pytest.fail('opened a present blob'), digest(data), len(data)) == (
        digest(data), len(data))
    assert (store.bytes_written, store.bytes_skipped) == (len(data), len(data))


def test_dry_run_writes_nothing_but_predicts_digests(tmp_path):
    amd = legacy(tmp_path, 'amd.tar', [Image('x86_64')])
    arm = legacy(tmp_path, 'arm.tar', [Image('aarch64')])
    specs = [{'ref': REF, 'docker_archive': amd}, {'ref': REF, 'docker_archive': arm}]
    dry = store_at(tmp_path, dry_run=True)
    assert sync_images(dry, specs) == {'added': [REF], 'updated': []}
    assert not (tmp_path / 'store').exists()
    real = store_at(tmp_path)
    sync_images(real, specs)
    assert dry.images() == real.images()
    assert dry.bytes_written == real.bytes_written


def test_unsupported_or_mismatched_arch(tmp_path):
    store = store_at(tmp_path)
    s390 = legacy(tmp_path, 's390.tar', [Image(goarch='s390x')])
    with pytest.raises(OciError) as err:
        import_docker_archive(store, s390, REF)
    assert REF in str(err.value) and 'linux/s390x' in str(err.value) and s390 in str(err.value)
    amd = legacy(tmp_path, 'amd.tar', [Image('x86_64')])
    with pytest.raises(OciError) as err:
        import_spec(store, {'ref': REF, 'docker_archive': amd, 'arch': 'aarch64'})
    assert 'is linux/amd64, expected one of: linux/arm64 (aarch64)' in str(err.value)
    with pytest.raises(OciError) as err:
        import_spec(store, {'ref': REF, 'docker_archive': amd, 'arch': 'ppc64le'})
    assert "unsupported arch 'ppc64le'" in str(err.value)
    assert store.blob_digests() == set()


def test_platform_plan_lists_one_platforms_blobs(tmp_path):
    """What loading needs for one platform comes from platform_plan (the store has no second answer)."""
    amd_image = Image('x86_64', layers=[BASE, layer({'a': b'1'})])
    arm_image = Image('aarch64', layers=[layer({'b': b'2'})])
    store = store_at(tmp_path)
    sync_images(store, [{'ref': REF, 'docker_archive': legacy(tmp_path, 'a.tar', [amd_image])},
                        {'ref': REF, 'docker_archive': legacy(tmp_path, 'b.tar', [arm_image])}])
    platforms = store.images()[0]['platforms']
    needed = [blob[:2] for blob in platform_plan(store, REF, 'linux/amd64')['blobs']]
    top = store.entry(REF)
    amd_manifest = store.read_json(platforms['linux/amd64'])
    assert needed == [(top['digest'], top['size']), (platforms['linux/amd64'], needed[1][1]),
                      (digest(amd_image.config), len(amd_image.config))] + [
        (digest(d), len(d)) for d in amd_image.layers]
    assert amd_manifest['layers'][0]['digest'] == digest(BASE)
    assert [blob[:2] for blob in platform_plan(store, REF, 'linux/arm64')['blobs']][2:] == [
        (digest(arm_image.config), len(arm_image.config)), (digest(arm_image.layers[0]), len(arm_image.layers[0]))]
    with pytest.raises(OciError) as err:
        platform_plan(store, REF, 'linux/s390x')
    assert 'has no platform linux/s390x' in str(err.value)


def test_parse_ref_and_www_authenticate():
    assert parse_ref('registry.ferry.local:5000/demo/web:1.0') == (
        'registry.ferry.local:5000', 'demo/web', '1.0', None)
    assert parse_ref('nginx') == ('registry-1.docker.io', 'library/nginx', 'latest', None)
    dig = 'sha256:' + 'a' * 64
    assert parse_ref('localhost/x/y@' + dig) == ('localhost', 'x/y', None, dig)
    with pytest.raises(OciError):
        parse_ref('UPPER/case:1')
    assert parse_www_authenticate(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"') == (
        'bearer', {'realm': 'https://auth.example/token', 'service': 'registry.example',
                   'scope': 'repository:a/b:pull'})
    assert parse_www_authenticate('Basic realm=test') == ('basic', {'realm': 'test'})


def test_unreachable_registry_is_a_clear_error(tmp_path):
    ref = '127.0.0.1:%d/demo/web:1.0' % free_port()
    store = store_at(tmp_path)
    with pytest.raises(RegistryError) as err:
        pull_image(store, ref, timeout=5)
    message = str(err.value)
    assert 'cannot reach registry http://%s' % ref.split('/')[0] in message
    assert ref in message and 'refused' in message.lower()
    assert store_files(tmp_path / 'store') == []


def test_oci_archive_without_media_types_and_with_a_corrupt_config(tmp_path):
    amd, arm = Image('x86_64'), Image('aarch64')
    entries = oci_entries([amd, arm], ref_name=REF)
    index = json.loads(entries[-1][1])
    del index['manifests'][0]['mediaType']
    entries[-1] = ('index.json', json.dumps(index).encode())
    store = store_at(tmp_path)
    manifests = import_oci_archive(store, write_tar(tmp_path / 'plain.tar', entries), REF, ['aarch64'])
    assert [m['digest'] for m in manifests] == [digest(arm.manifest())]

    name = 'blobs/sha256/' + digest(amd.config)[7:]
    bad = [(e[0], b'{}') if e[0] == name else e for e in entries]
    path = write_tar(tmp_path / 'bad.tar', bad)
    with pytest.raises(OciError) as err:
        import_oci_archive(ImageStore(str(tmp_path / 'other')), path, REF)
    assert 'expected %s, got %s' % (digest(amd.config), digest(b'{}')) in str(err.value)
    assert path in str(err.value)
    assert not (tmp_path / 'other').exists()
