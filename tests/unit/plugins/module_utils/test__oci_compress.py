# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_oci.compress: deterministic layer compression at import, the diff_id map, compressed layers checked,
and a zstd image loaded into a real containerd."""

import gzip
import io
import json
import os
import sys

import pytest
import zstandard

from ansible_collections.ferry.airgap.plugins.module_utils._oci import compress as Z
from ansible_collections.ferry.airgap.plugins.module_utils._oci.archive import import_docker_archive, import_oci_archive
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import (
    MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, OciError)
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._oci.sync import sync_images
from ansible_collections.ferry.airgap.plugins.module_utils._runtime import containerd as C
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import chain_id, platform_plan

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import (
    Image, corrupt, digest, docker_legacy_entries, docker_new_entries, layer, manifest_of, oci_entries, store_files,
    write_tar)

REF = 'registry.ferry.local/demo/web:1.0'


def text_layer(name, lines=2000):
    """A layer that compresses (text, like the files of real packages)."""
    return layer({name: b''.join(b'%s line %d of a configuration file\n' % (name.encode(), i) for i in range(lines)),
                  'etc/' + name + '.conf': b'key = value\n' * 100})


BASE = text_layer('base', 20000)


def store_at(tmp_path, name='store'):
    store = ImageStore(str(tmp_path / name))
    store.init()
    return store


def blob(store, dig):
    with open(store.blob_path(dig), 'rb') as fh:
        return fh.read()


def unzstd(data):
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def compress_all(data, compression, step):
    reader = Z.CompressingReader(io.BytesIO(data), compression, None, 'test layer')
    out = []
    while True:
        chunk = reader.read(step)
        if not chunk:
            return b''.join(out)
        out.append(chunk)


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize('compression', ['zstd', 'gzip'])
def test_compression_is_deterministic_and_round_trips(compression):
    data = BASE + os.urandom(3 * 1024 * 1024)  # more than one 1 MiB read
    one = compress_all(data, compression, 1 << 20)
    assert one == compress_all(data, compression, 4096)
    assert (unzstd(one) if compression == 'zstd' else gzip.decompress(one)) == data
    if compression == 'gzip':
        assert one[4:8] == b'\0\0\0\0' and not ord(one[3:4]) & 0x08  # mtime 0, no file name
    else:
        header = zstandard.get_frame_parameters(one)
        assert (header.content_size, header.dict_id, header.has_checksum) == (zstandard.CONTENTSIZE_UNKNOWN, 0, False)


def test_same_archive_gives_the_same_store_bytes(tmp_path):
    image = Image(layers=[BASE, text_layer('app')])
    path = write_tar(tmp_path / 'web.tar', docker_legacy_entries([image]))
    first, second = store_at(tmp_path, 'one'), store_at(tmp_path, 'two')
    sync_images(first, [{'ref': REF, 'docker_archive': path}], ['x86_64'], 'zstd')
    sync_images(second, [{'ref': REF, 'docker_archive': path}], ['x86_64'], 'zstd')
    assert first.refs() == second.refs()
    assert store_files(first.path) == store_files(second.path)


def test_unknown_compression_is_refused(tmp_path):
    with pytest.raises(OciError, match=r"unknown layer compression 'xz' \(choose one of: zstd, gzip, none\)"):
        Z.check_compression('xz')
    with pytest.raises(OciError, match='unknown layer compression'):
        sync_images(store_at(tmp_path), [], ['x86_64'], 'lz4')


def test_missing_zstandard_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'zstandard', None)  # import zstandard now raises ImportError
    path = write_tar(tmp_path / 'web.tar', docker_legacy_entries([Image(layers=[BASE])]))
    store = store_at(tmp_path)
    with pytest.raises(OciError, match="need the Python package 'zstandard' on the build machine.*images_compression"):
        sync_images(store, [{'ref': REF, 'docker_archive': path}], ['x86_64'], 'zstd')
    sync_images(store, [{'ref': REF, 'docker_archive': path}], ['x86_64'], 'gzip')  # gzip needs nothing more
    assert store.verify() == []


# ---------------------------------------------------------------- docker archives

@pytest.mark.parametrize('compression, media_type', [('zstd', MT_OCI_LAYER_ZSTD), ('gzip', MT_OCI_LAYER_GZIP)])
def test_docker_layers_are_stored_compressed_with_the_same_diff_ids(tmp_path, compression, media_type):
    image = Image(layers=[BASE, text_layer('app')])
    store = store_at(tmp_path)
    writer = Z.LayerWriter(store, compression)
    [desc] = import_docker_archive(store, write_tar(tmp_path / 'web.tar', docker_legacy_entries([image])), REF,
                                   ['x86_64'], writer)
    store.set_ref(REF, [desc])
    manifest = store.read_json(desc['digest'])
    assert blob(store, manifest['config']['digest']) == image.config  # diff_ids unchanged
    diff_ids = store.read_json(manifest['config']['digest'])['rootfs']['diff_ids']
    for layer_desc, raw, diff_id in zip(manifest['layers'], image.layers, diff_ids):
        assert layer_desc['mediaType'] == media_type
        assert layer_desc['annotations'] == {Z.DIFF_ID_ANNOTATION: diff_id} and digest(raw) == diff_id
        data = blob(store, layer_desc['digest'])
        assert layer_desc['size'] == len(data) < len(raw)
        assert (unzstd(data) if compression == 'zstd' else gzip.decompress(data)) == raw
        assert not os.path.exists(store.blob_path(diff_id))  # the plain layer is not stored
    assert store.verify() == []


def test_none_keeps_todays_store(tmp_path):
    image = Image(layers=[BASE])
    store = store_at(tmp_path)
    [desc] = import_docker_archive(store, write_tar(tmp_path / 'web.tar', docker_legacy_entries([image])), REF,
                                   ['x86_64'], Z.LayerWriter(store, 'none'))
    [layer_desc] = store.read_json(desc['digest'])['layers']
    assert layer_desc == {'mediaType': MT_OCI_LAYER, 'digest': digest(BASE), 'size': len(BASE)}


def test_a_layer_shared_by_two_archives_is_stored_once_and_not_read_again(tmp_path):
    web = Image(layers=[BASE, text_layer('web')], tags=('demo/web:1.0',))
    api = Image(layers=[BASE, text_layer('api')], tags=('demo/api:1.0',))
    specs = [{'ref': REF, 'docker_archive': write_tar(tmp_path / 'web.tar', docker_legacy_entries([web]))},
             {'ref': 'registry.ferry.local/demo/api:1.0',
              'docker_archive': write_tar(tmp_path / 'api.tar', docker_new_entries([api]))}]
    store = store_at(tmp_path)
    sync_images(store, specs, ['x86_64'], 'zstd')
    base_web = manifest_of(store, REF, 'amd64')['layers'][0]
    base_api = manifest_of(store, 'registry.ferry.local/demo/api:1.0', 'amd64')['layers'][0]
    assert base_web == base_api
    layers = [f for f in store_files(store.path) if f.startswith('blobs/')]
    assert len(layers) == 3 + 2 + 2  # base, web, api; two configs; two manifests
    files = store_files(store.path)

    # a rerun (a new process: the map comes from the store's manifests) reads and compresses nothing
    again = ImageStore(store.path)
    writer = Z.LayerWriter(again, 'zstd')
    reads = []
    original = Z.CompressingReader.read
    try:
        Z.CompressingReader.read = lambda self, size=-1: reads.append(1) or original(self, size)
        for spec in specs:
            again.set_ref(spec['ref'], import_docker_archive(again, spec['docker_archive'], spec['ref'], ['x86_64'],
                                                             writer))
    finally:
        Z.CompressingReader.read = original
    assert (reads, writer.reused, again.bytes_written) == ([], 4, 0)
    assert store_files(store.path) == files and again.verify() == []


def test_a_layer_stored_as_gzip_is_not_reused_for_zstd(tmp_path):
    path = write_tar(tmp_path / 'web.tar', docker_legacy_entries([Image(layers=[BASE])]))
    store = store_at(tmp_path)
    sync_images(store, [{'ref': REF, 'docker_archive': path}], ['x86_64'], 'gzip')
    sync_images(store, [{'ref': 'r.local/web:zstd', 'docker_archive': path}], ['x86_64'], 'zstd')
    types = [manifest_of(store, ref, 'amd64')['layers'][0]['mediaType'] for ref in (REF, 'r.local/web:zstd')]
    assert types == [MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD]


def test_a_plain_layer_that_is_not_its_diff_id_fails_and_leaves_no_blob(tmp_path):
    image = Image(layers=[BASE])
    entries = docker_legacy_entries([image])
    # the layer member is replaced by other content: the config's diff_id no longer matches
    entries = [(e[0], text_layer('other')) if isinstance(e, tuple) and e[0].endswith('/layer.tar') else e
               for e in entries]
    store = store_at(tmp_path)
    before = store_files(store.path)
    with pytest.raises(OciError, match=r"digest mismatch for layer '.*/layer.tar' of archive .*expected diff_id %s"
                       % digest(BASE)):
        import_docker_archive(store, write_tar(tmp_path / 'bad.tar', entries), REF, ['x86_64'],
                              Z.LayerWriter(store, 'zstd'))
    assert store_files(store.path) == before


# ---------------------------------------------------------------- compressed layers: kept, and checked

def test_compressed_oci_archive_keeps_its_manifest_digest(tmp_path):
    image = Image(layers=[gzip.compress(BASE, mtime=0)])
    store = store_at(tmp_path)
    [desc] = import_oci_archive(store, write_tar(tmp_path / 'web.tar', oci_entries([image])), REF, ['x86_64'],
                                Z.LayerWriter(store, 'zstd'))
    assert desc['digest'] == digest(image.manifest())  # pinned by digest: unchanged


def test_plain_oci_archive_layers_are_compressed_and_the_manifest_rewritten(tmp_path):
    amd, arm = Image('x86_64', layers=[BASE, text_layer('amd')]), Image('aarch64', layers=[BASE, text_layer('arm')])
    store = store_at(tmp_path)
    found = import_oci_archive(store, write_tar(tmp_path / 'web.tar', oci_entries([amd, arm])), REF,
                               ['x86_64', 'aarch64'], Z.LayerWriter(store, 'zstd'))
    store.set_ref(REF, found)
    for image, goarch in ((amd, 'amd64'), (arm, 'arm64')):
        manifest = manifest_of(store, REF, goarch)
        assert manifest['config']['digest'] == digest(image.config)
        assert [unzstd(blob(store, d['digest'])) for d in manifest['layers']] == image.layers
    assert manifest_of(store, REF, 'amd64')['layers'][0] == manifest_of(store, REF, 'arm64')['layers'][0]
    assert store.verify() == []


def gzip_corrupt(data):
    """``data`` gzip-compressed, one byte in the deflate stream flipped."""
    packed = bytearray(gzip.compress(data, mtime=0))
    packed[len(packed) // 2] ^= 0xff
    return bytes(packed)


@pytest.mark.parametrize('damage, words', [
    (gzip_corrupt, 'is not a valid gzip stream'),
    (lambda data: gzip.compress(data, mtime=0)[:-200], 'is not a valid gzip stream: it ends before its end mark'),
    (lambda data: zstandard.ZstdCompressor().compress(data)[:-100], 'is not a valid zstd stream'),
    (lambda data: gzip.compress(text_layer('other'), mtime=0), 'decompresses to'),
])
def test_a_corrupt_compressed_layer_is_caught_at_build(tmp_path, damage, words):
    image = Image(layers=[BASE])
    bad = damage(BASE)
    image.layers = [bad]  # the config keeps BASE's diff_id; the manifest describes the damaged bytes
    store = store_at(tmp_path)
    before = store_files(store.path)
    with pytest.raises(OciError, match='layer %s of %s .*%s' % (digest(bad), REF, words)):
        import_oci_archive(store, write_tar(tmp_path / 'web.tar', oci_entries([image])), REF, ['x86_64'],
                           Z.LayerWriter(store, 'zstd'))
    assert not os.path.exists(store.blob_path(digest(bad)))
    assert [f for f in store_files(store.path) if f not in before and 'sha256' in f and
            digest(image.config)[7:] not in f] == []  # only the config may have been written before


def test_a_corrupt_gzip_layer_in_a_docker_archive_is_caught(tmp_path):
    image = Image(layers=[BASE])
    entries = [(e[0], gzip_corrupt(BASE)) if isinstance(e, tuple) and e[0].endswith('/layer.tar') else e
               for e in docker_legacy_entries([image])]
    store = store_at(tmp_path)
    with pytest.raises(OciError, match="layer '.*/layer.tar' of archive .* is not a valid gzip stream"):
        import_docker_archive(store, write_tar(tmp_path / 'bad.tar', entries), REF, ['x86_64'],
                              Z.LayerWriter(store, 'zstd'))


def test_a_plain_layer_labelled_gzip_is_kept_as_containerd_reads_it(tmp_path):
    store = store_at(tmp_path)
    writer = Z.LayerWriter(store, 'zstd')
    desc = {'mediaType': MT_OCI_LAYER_GZIP, 'digest': digest(BASE), 'size': len(BASE)}
    assert writer.put_kept(lambda: io.BytesIO(BASE), desc, digest(BASE), 'layer') == (digest(BASE), len(BASE))
    with pytest.raises(OciError, match='decompresses to %s, its config says diff_id sha256:0+$' % digest(BASE)):
        Z.LayerWriter(store_at(tmp_path, 'other'), 'zstd').put_kept(
            lambda: io.BytesIO(BASE), desc, 'sha256:' + '0' * 64, 'layer')


def test_verify_catches_a_stored_zstd_blob_that_changed(tmp_path):
    store = store_at(tmp_path)
    path = write_tar(tmp_path / 'web.tar', docker_legacy_entries([Image(layers=[BASE])]))
    sync_images(store, [{'ref': REF, 'docker_archive': path}], ['x86_64'], 'zstd')
    layer_digest = manifest_of(store, REF, 'amd64')['layers'][0]['digest']
    corrupt(store, layer_digest, offset=20)
    problems = store.verify()
    assert [p['digest'] for p in problems] == [layer_digest]
    assert '%s: blob %s is corrupt' % (REF, layer_digest) in problems[0]['msg']


# ---------------------------------------------------------------- into containerd (the host side, unchanged)

def test_zstd_image_loads_into_containerd(containerd, namespace, tmp_path):
    web = Image(layers=[BASE, text_layer('web')], tags=('demo/web:1.0',))
    store = store_at(tmp_path)
    sync_images(store, [{'ref': REF, 'docker_archive': write_tar(tmp_path / 'web.tar', docker_legacy_entries([web]))}],
                ['x86_64'], 'zstd')
    plan = platform_plan(store, REF, 'linux/amd64')
    assert [b[2] for b in plan['blobs']] == ['manifest', 'config', 'layer', 'layer']
    ctr = C.Ctr(['ctr'], containerd.address, namespace)
    ctr.load(store, [plan], plan['blobs'], 'linux/amd64')
    images, content, snapshots = ctr.images(), ctr.content(), ctr.snapshots()
    assert images == {REF: store.entry(REF)['digest']}
    # unpacked: containerd decompressed the zstd layers and found the config's diff_ids
    assert plan['chain_id'] == chain_id([digest(raw) for raw in web.layers]) and plan['chain_id'] in snapshots
    assert ctr.is_loaded(plan, images, content, snapshots)


def test_an_annotation_the_config_does_not_back_is_not_trusted(tmp_path):
    """A manifest kept as it arrived may carry Ferry's annotation with another diff_id: never reused for it."""
    other = text_layer('other')
    packed = zstandard.ZstdCompressor().compress(other)
    image = Image(layers=[packed])
    forged = json.loads(image.manifest())
    forged['layers'][0]['annotations'] = {Z.DIFF_ID_ANNOTATION: digest(BASE)}  # a lie: the layer is `other`
    image.manifest = lambda: json.dumps(forged, sort_keys=True).encode()
    store = store_at(tmp_path)
    store.set_ref('r.local/forged:1', import_oci_archive(
        store, write_tar(tmp_path / 'forged.tar', oci_entries([image])), 'r.local/forged:1', ['x86_64'],
        Z.LayerWriter(store, 'zstd')))
    writer = Z.LayerWriter(store, 'zstd')
    assert writer.known(digest(BASE)) is None and writer.known(digest(other)) is None
    sync_images(store, [{'ref': REF, 'docker_archive': write_tar(tmp_path / 'web.tar', docker_legacy_entries(
        [Image(layers=[BASE])]))}], ['x86_64'], 'zstd')
    assert unzstd(blob(store, manifest_of(store, REF, 'amd64')['layers'][0]['digest'])) == BASE


@pytest.mark.parametrize('pack', [
    lambda data: zstandard.ZstdCompressor().compress(data),
    lambda data: zstandard.ZstdCompressor().compress(data[:5000]) + zstandard.ZstdCompressor().compress(data[5000:]),
    lambda data: gzip.compress(data[:5000], mtime=0) + gzip.compress(data[5000:], mtime=0),
], ids=['zstd', 'zstd-two-frames', 'gzip-two-members'])
def test_valid_compressed_layers_are_checked_and_kept(tmp_path, pack):
    packed = pack(BASE)
    image = Image(layers=[packed], config={'architecture': 'amd64', 'os': 'linux',
                                           'rootfs': {'type': 'layers', 'diff_ids': [digest(BASE)]}})
    store = store_at(tmp_path)
    [desc] = import_oci_archive(store, write_tar(tmp_path / 'web.tar', oci_entries([image])), REF, ['x86_64'],
                                Z.LayerWriter(store, 'zstd'))
    assert desc['digest'] == digest(image.manifest()) and blob(store, digest(packed)) == packed
