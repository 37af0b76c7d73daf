# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""image_load run in-process against a real, private containerd 1.6 (no mocks of ctr)."""

import os
import shutil
import socket

import pytest


from ansible_collections.ferry.airgap.plugins.module_utils._runtime.containerd import STAGING_PREFIX
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import chain_id
from ansible_collections.ferry.airgap.plugins.modules import image_load

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support import modules as testlib
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.containerd import (
    have_containerd, private_containerd, resize, short_tmpdir)
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import build_store, corrupt, layer_pair, manifest_of, platform_blobs, random_layer

WEB = 'registry.ferry.local/demo/web:1.0'
API = 'registry.ferry.local/demo/api:2.1'
DB = 'registry.ferry.local/demo/db:16'


def run_module(capsys, args, check_mode=False, diff=False):
    """(exit code, result) of image_load with ``args``."""
    result, code = testlib.run_module(image_load, args, capsys, check_mode=check_mode, diff=diff)
    return code, result


@pytest.fixture(scope='module')
def layers():
    return {'base': random_layer('bin/base', 400000), 'web-amd': random_layer('web', 300000),
            'web-arm': random_layer('web', 250000), 'api': random_layer('api', 200000),
            'db': random_layer('db', 150000)}


@pytest.fixture
def store(tmp_path, layers):
    """web: amd64 + arm64 (index), api: amd64 only, sharing web's base layer; db: amd64, its own layer."""
    return build_store(tmp_path / 'store', {
        WEB: [('amd64', [layers['base'], layers['web-amd']], None), ('arm64', [layers['base'], layers['web-arm']], 'v8')],
        API: [('amd64', [layers['base'], layers['api']], None)],
        DB: [('amd64', [layers['db']], None)],
    })


def args_for(daemon, ns, image_store, **extra):
    args = {'store': image_store.path, 'address': daemon.address, 'namespace': ns, 'platform': 'linux/amd64'}
    args.update(extra)
    return args


def total(blobs):
    return sum(blobs.values())


def test_first_load_then_nothing_to_do(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store))
    assert code == 0, result
    expected = {}
    for ref in (WEB, API, DB):
        expected.update(platform_blobs(store, ref, 'amd64'))
    assert result['changed'] is True
    assert sorted(result['loaded']) == sorted([WEB, API, DB]) and result['present'] == []
    assert result['bytes_moved'] == total(expected)  # the shared base layer counts once
    assert result['blobs_moved'] == len(expected)
    listed = containerd.images(namespace)
    assert listed == dict((ref, store.entry(ref)['digest']) for ref in (WEB, API, DB))  # no staging names left
    assert result['images'] == listed
    assert set(expected) <= containerd.content(namespace)
    # unpacked: the snapshot keyed by each image's chain ID is committed
    snapshots = containerd.snapshots(namespace)
    for ref in (WEB, API, DB):
        config = store.read_json(manifest_of(store, ref, 'amd64')['config']['digest'])
        assert chain_id(config['rootfs']['diff_ids']) in snapshots
    rc, out, err = containerd.ctr(namespace, 'images', 'check', '-q')
    assert sorted(out.split()) == sorted([WEB, API, DB])  # ctr: complete and unpacked

    code, again = run_module(capsys, args_for(containerd, namespace, store))
    assert code == 0, again
    assert again['changed'] is False
    assert (again['loaded'], again['bytes_moved'], again['blobs_moved']) == ([], 0, 0)
    assert sorted(again['present']) == sorted([WEB, API, DB])
    assert containerd.images(namespace) == listed


def test_second_image_sends_only_its_own_layers(capsys, containerd, namespace, store, layers):
    code, first = run_module(capsys, args_for(containerd, namespace, store, images=[WEB]))
    assert code == 0, first
    assert first['loaded'] == [WEB] and first['bytes_moved'] == total(platform_blobs(store, WEB, 'amd64'))
    code, second = run_module(capsys, args_for(containerd, namespace, store, images=[WEB, API]))
    assert code == 0, second
    api = platform_blobs(store, API, 'amd64')
    base = manifest_of(store, API, 'amd64')['layers'][0]
    assert base['digest'] in platform_blobs(store, WEB, 'amd64')
    assert second['loaded'] == [API] and second['present'] == [WEB]
    assert second['bytes_moved'] == total(api) - base['size']
    assert second['blobs_moved'] == len(api) - 1
    assert set(containerd.images(namespace)) == {WEB, API}


def test_arm64_into_amd64_containerd(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[WEB], platform='linux/arm64/v8'))
    assert code == 0, result
    assert result['platform'] == 'linux/arm64'
    arm = platform_blobs(store, WEB, 'arm64')
    assert result['bytes_moved'] == total(arm)
    content = containerd.content(namespace)
    assert set(arm) <= content
    amd_manifest = [d for d in store.read_json(store.entry(WEB)['digest'])['manifests']
                    if d['platform']['architecture'] == 'amd64'][0]
    assert amd_manifest['digest'] not in content  # only the requested platform was sent
    # a foreign platform unpacks too: extracting layers does not depend on the CPU
    config = store.read_json(manifest_of(store, WEB, 'arm64')['config']['digest'])
    assert chain_id(config['rootfs']['diff_ids']) in containerd.snapshots(namespace)
    code, again = run_module(capsys, args_for(containerd, namespace, store, images=[WEB], platform='linux/arm64'))
    assert (code, again['changed'], again['bytes_moved']) == (0, False, 0)


def test_without_unpack_no_snapshot(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[DB], unpack=False))
    assert code == 0, result
    assert result['loaded'] == [DB]
    assert containerd.snapshots(namespace) == set()
    code, again = run_module(capsys, args_for(containerd, namespace, store, images=[DB], unpack=False))
    assert (again['changed'], again['bytes_moved']) == (False, 0)
    # asking for unpack later unpacks without sending any blob
    code, unpacked = run_module(capsys, args_for(containerd, namespace, store, images=[DB]))
    assert code == 0, unpacked
    assert (unpacked['loaded'], unpacked['bytes_moved'], unpacked['changed']) == ([DB], 0, True)
    assert len(containerd.snapshots(namespace)) == 1


def test_check_mode_touches_nothing(capsys, containerd, namespace, store):
    code, first = run_module(capsys, args_for(containerd, namespace, store, images=[WEB]))
    assert code == 0, first
    before = (containerd.images(namespace), containerd.content(namespace), containerd.snapshots(namespace))
    code, result = run_module(capsys, args_for(containerd, namespace, store), check_mode=True)
    assert code == 0, result
    assert result['changed'] is True
    assert sorted(result['loaded']) == [API, DB] and result['present'] == [WEB]
    needed = dict(platform_blobs(store, API, 'amd64'), **platform_blobs(store, DB, 'amd64'))
    held = before[1]
    assert result['bytes_moved'] == sum(size for digest, size in needed.items() if digest not in held)
    assert result['images'] == dict((ref, store.entry(ref)['digest']) for ref in (WEB, API, DB))
    assert (containerd.images(namespace), containerd.snapshots(namespace)) == (before[0], before[2])
    # nothing added (the import's own index.json blob, unreferenced, may be collected meanwhile)
    assert containerd.content(namespace) <= before[1]


def test_diff_lists_images_before_and_after(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[WEB]), diff=True)
    assert code == 0, result
    assert result['diff']['before'] == ''
    assert result['diff']['after'] == '%s@%s\n' % (WEB, store.entry(WEB)['digest'])
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[DB]), diff=True, check_mode=True)
    assert result['diff']['before'] == '%s@%s\n' % (WEB, store.entry(WEB)['digest'])
    assert result['diff']['after'] == ''.join(sorted('%s@%s\n' % (r, store.entry(r)['digest']) for r in (WEB, DB)))


def test_new_digest_for_a_ref_is_loaded(capsys, containerd, namespace, tmp_path, store):
    code, first = run_module(capsys, args_for(containerd, namespace, store, images=[DB]))
    assert code == 0, first
    newer = build_store(tmp_path / 'newer', {DB: [('amd64', [random_layer('db', 1000)], None)]})
    code, result = run_module(capsys, args_for(containerd, namespace, newer), diff=True)
    assert code == 0, result
    assert result['changed'] is True and result['loaded'] == [DB]
    assert containerd.images(namespace) == {DB: newer.entry(DB)['digest']}
    assert result['diff']['before'] != result['diff']['after']


def test_corrupt_blob_fails_and_tags_nothing(capsys, containerd, namespace, tmp_path, store):
    code, first = run_module(capsys, args_for(containerd, namespace, store, images=[DB]))
    assert code == 0, first
    # a new version of DB (to see that an existing ref keeps its digest) and WEB, one of whose layers is corrupt
    shutil.copytree(store.path, str(tmp_path / 'bad'))
    bad = build_store(tmp_path / 'bad', {DB: [('amd64', [random_layer('db', 1000)], None)]})
    assert bad.entry(DB)['digest'] != store.entry(DB)['digest']
    layer = manifest_of(bad, WEB, 'amd64')['layers'][1]['digest']
    corrupt(bad, layer, offset=1000)
    before = containerd.images(namespace)
    code, result = run_module(capsys, args_for(containerd, namespace, bad, images=[DB, WEB]))
    assert code == 1
    msg = result['msg']
    assert layer in msg and 'layer of %s' % WEB in msg and 'corrupt' in msg
    assert 'expected %s, actual sha256:' % layer in msg
    after = containerd.images(namespace)
    assert after == before == {DB: store.entry(DB)['digest']}  # nothing tagged, the old DB untouched
    assert not [ref for ref in after if ref.startswith(STAGING_PREFIX)]


def test_corrupt_small_last_blob(capsys, containerd, namespace, tmp_path, layers):
    """The corrupt blob fits in one chunk and is the last of the stream: still nothing is tagged."""
    bad = build_store(tmp_path / 'bad', {API: [('amd64', [layers['api'], layer_pair({'tiny': b'1'})], None)]})
    last = manifest_of(bad, API, 'amd64')['layers'][-1]
    assert last['size'] < 200
    corrupt(bad, last['digest'], offset=20)
    code, result = run_module(capsys, args_for(containerd, namespace, bad))
    assert code == 1 and last['digest'] in result['msg'] and 'layer of %s' % API in result['msg']
    assert containerd.images(namespace) == {}


def test_corrupt_document_fails_before_anything_is_sent(capsys, containerd, namespace, tmp_path, layers):
    bad = build_store(tmp_path / 'bad', {API: [('amd64', [layers['api']], None)]})
    config = manifest_of(bad, API, 'amd64')['config']['digest']
    corrupt(bad, config, offset=2)
    code, result = run_module(capsys, args_for(containerd, namespace, bad))
    assert code == 1
    assert result['msg'].startswith("blob %s (config of %s) in store '%s' is corrupt: expected %s, actual sha256:" % (
        config, API, bad.path, config))
    assert (result['bytes_moved'], containerd.images(namespace)) == (0, {})


def test_size_mismatch_fails(capsys, containerd, namespace, tmp_path, layers):
    bad = build_store(tmp_path / 'bad', {API: [('amd64', [layers['api']], None)]})
    layer = manifest_of(bad, API, 'amd64')['layers'][0]
    with open(bad.blob_path(layer['digest']), 'ab') as fh:
        fh.write(b'x')
    code, result = run_module(capsys, args_for(containerd, namespace, bad))
    assert code == 1
    assert 'expected %d bytes, found %d' % (layer['size'], layer['size'] + 1) in result['msg']
    assert containerd.images(namespace) == {}


def test_containerd_down(capsys, namespace, store, tmp_path):
    missing = str(tmp_path / 'nothing.sock')
    code, result = run_module(capsys, {'store': store.path, 'address': missing, 'namespace': namespace,
                                       'platform': 'linux/amd64'})
    assert code == 1
    assert result['msg'].startswith('containerd is not running: its socket %s does not exist' % missing)
    stale = os.path.join(short_tmpdir('ferry-stale-'), 's.sock')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(stale)
    sock.close()  # a socket file nobody listens on: containerd died
    try:
        if have_containerd():
            pytest.skip(have_containerd())
        code, result = run_module(capsys, {'store': store.path, 'address': stale, 'namespace': namespace,
                                           'platform': 'linux/amd64'})
    finally:
        shutil.rmtree(os.path.dirname(stale))
    assert code == 1
    assert result['msg'].startswith('cannot reach containerd at %s: containerd is not running' % stale)
    assert 'connection refused' in result['msg']


def test_ref_missing(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[WEB, 'registry.ferry.local/x:1']))
    assert code == 1
    assert result['msg'] == "store '%s' has no image registry.ferry.local/x:1 (it has: %s)" % (
        store.path, ', '.join(sorted([API, DB, WEB])))
    assert containerd.images(namespace) == {}


def test_platform_missing(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[API], platform='linux/arm64'))
    assert code == 1
    assert result['msg'] == 'image %s has no platform linux/arm64 (it has: linux/amd64)' % API
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[WEB], platform='linux/s390x'))
    assert result['msg'] == 'image %s has no platform linux/s390x (it has: linux/amd64, linux/arm64)' % WEB


def test_store_missing_or_invalid(capsys, containerd, namespace, store, tmp_path):
    args = args_for(containerd, namespace, store, store=str(tmp_path / 'nope'))
    code, result = run_module(capsys, args)
    assert code == 1 and result['msg'] == "store '%s' is not an OCI image layout (no oci-layout file there)" % args['store']
    os.unlink(os.path.join(store.path, 'index.json'))
    with open(os.path.join(store.path, 'index.json'), 'w') as fh:
        fh.write('{"manifests": 3}')
    code, result = run_module(capsys, args_for(containerd, namespace, store))
    assert code == 1 and result['msg'] == "store '%s': index.json has no manifests list" % store.path


def test_ctr_missing(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, ctr=['ferry-no-such-ctr']))
    assert code == 1
    assert result['msg'].startswith("ctr command 'ferry-no-such-ctr' not found")


def test_ctr_as_argv_prefix_like_k3s(capsys, containerd, namespace, store, tmp_path):
    fake = tmp_path / 'k3s'
    fake.write_text('#!/bin/sh\n[ "$1" = ctr ] || exit 64\nshift\nexec ctr "$@"\n')
    fake.chmod(0o755)
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[DB], ctr=[str(fake), 'ctr']))
    assert code == 0, result
    assert containerd.images(namespace) == {DB: store.entry(DB)['digest']}


def test_host_platform_default(capsys, containerd, namespace, store):
    import platform
    if platform.machine() != 'x86_64':
        pytest.skip('the store has amd64 images for DB only')
    args = args_for(containerd, namespace, store, images=[DB])
    del args['platform']
    code, result = run_module(capsys, args)
    assert code == 0, result
    assert result['platform'] == 'linux/amd64'


# ---------------------------------------------------------------- disk full (a containerd whose root is a small tmpfs)

@pytest.fixture
def small_containerd():
    with private_containerd('ferry-full-', tmpfs_size='20m') as daemon:
        yield daemon


def big_store(tmp_path, layers, daemon):
    """DB plus a WEB of three 9 MiB layers, and the module arguments loading it into ``daemon``."""
    big = build_store(tmp_path / 'big', {
        DB: [('amd64', [layers['db']], None)],
        WEB: [('amd64', [random_layer('x%d' % i, 9 * 1024 * 1024) for i in range(3)], None)],
    })
    return big, {'store': big.path, 'address': daemon.address, 'namespace': 'k8s.io', 'platform': 'linux/amd64'}


def test_disk_full_while_ingesting_then_rerun(capsys, small_containerd, tmp_path, layers):
    big, args = big_store(tmp_path, layers, small_containerd)
    code, result = run_module(capsys, args)
    assert code == 1
    msg = result['msg']
    assert msg.startswith('disk full: containerd ran out of space writing %s/io.containerd.content.v1.content/ingest/'
                          % small_containerd.root)
    assert '(containerd root %s, on a 20.0 MiB filesystem)' % small_containerd.root in msg and 'no image was tagged' in msg
    assert 'run again' in msg
    assert small_containerd.images('k8s.io') == {}  # ctr still works, nothing half-made listed
    resize(small_containerd, '200m')
    code, result = run_module(capsys, args)
    assert code == 0, result
    wanted = dict(platform_blobs(big, DB, 'amd64'), **platform_blobs(big, WEB, 'amd64'))
    assert result['bytes_moved'] == total(wanted)
    assert small_containerd.images('k8s.io') == {DB: big.entry(DB)['digest'], WEB: big.entry(WEB)['digest']}
    rc, out, err = small_containerd.ctr('k8s.io', 'images', 'check', '-q')
    assert sorted(out.split()) == sorted([DB, WEB])


def test_disk_full_while_unpacking_then_rerun(capsys, small_containerd, tmp_path, layers):
    """The content fits, its unpacked snapshots do not: the staging names go, no ref is tagged."""
    resize(small_containerd, '45m')
    big, args = big_store(tmp_path, layers, small_containerd)
    code, result = run_module(capsys, args)
    assert code == 1
    assert result['msg'].startswith('disk full: containerd ran out of space writing %s/io.containerd.snapshotter.v1.'
                                    % small_containerd.root), result['msg']
    assert small_containerd.images('k8s.io') == {}
    resize(small_containerd, '200m')
    code, result = run_module(capsys, args)
    assert code == 0, result
    assert small_containerd.images('k8s.io') == {DB: big.entry(DB)['digest'], WEB: big.entry(WEB)['digest']}
    rc, out, err = small_containerd.ctr('k8s.io', 'images', 'check', '-q')
    assert sorted(out.split()) == sorted([DB, WEB])


def test_blobs_missing_from_the_store(capsys, containerd, namespace, store):
    """A host store holds only the blobs of the images it needs: asking for another names what is missing."""
    manifest = store.entry(DB)['digest']
    os.unlink(store.blob_path(manifest))
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[DB]))
    assert code == 1
    assert result['msg'] == "image %s: cannot read its index or manifest: blob %s is missing from store '%s'" % (
        DB, manifest, store.path)
    layer = manifest_of(store, API, 'amd64')['layers'][1]['digest']
    os.unlink(store.blob_path(layer))
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[WEB, API]))
    assert code == 1
    assert result['msg'].startswith("blob %s (layer of %s) in store '%s' cannot be read: " % (layer, API, store.path))
    assert containerd.images(namespace) == {}


def test_snapshotter_option(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[DB], snapshotter='native'))
    assert code == 0, result
    config = store.read_json(manifest_of(store, DB, 'amd64')['config']['digest'])
    top = chain_id(config['rootfs']['diff_ids'])
    rc, out, err = containerd.ctr(namespace, 'snapshots', '--snapshotter', 'native', 'ls')
    assert top in out
    assert containerd.snapshots(namespace) == set()  # nothing in overlayfs
    code, again = run_module(capsys, args_for(containerd, namespace, store, images=[DB], snapshotter='native'))
    assert (again['changed'], again['loaded']) == (False, [])
    code, overlay = run_module(capsys, args_for(containerd, namespace, store, images=[DB]))
    assert (overlay['loaded'], overlay['bytes_moved']) == ([DB], 0)  # unpacked again, into overlayfs, nothing sent
    assert top in containerd.snapshots(namespace)


PINNED = {'io.cri-containerd.pinned': 'pinned'}


def test_labels_set_once_and_changed_only_when_they_change(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[API, DB], labels=PINNED))
    assert code == 0, result
    assert result['changed'] is True and sorted(result['labelled']) == sorted([API, DB])
    labels = listed_labels(containerd, namespace)
    assert labels[API] == PINNED and labels[DB] == PINNED

    code, again = run_module(capsys, args_for(containerd, namespace, store, images=[API, DB], labels=PINNED), diff=True)
    assert code == 0, again
    assert (again['changed'], again['labelled'], again['loaded']) == (False, [], [])
    assert again['diff']['before'] == again['diff']['after']
    assert 'io.cri-containerd.pinned=pinned' in again['diff']['after']

    # a label removed by hand is put back: a change, nothing loaded
    containerd.ctr(namespace, 'images', 'label', DB, 'io.cri-containerd.pinned=')
    code, fixed = run_module(capsys, args_for(containerd, namespace, store, images=[API, DB], labels=PINNED))
    assert code == 0, fixed
    assert (fixed['changed'], fixed['labelled'], fixed['loaded'], fixed['bytes_moved']) == (True, [DB], [], 0)
    assert listed_labels(containerd, namespace)[DB] == PINNED

    # another value is a change; other labels stay
    containerd.ctr(namespace, 'images', 'label', API, 'other=kept')
    code, moved = run_module(capsys, args_for(containerd, namespace, store, images=[API], labels={'io.cri-containerd.pinned': 'x'}))
    assert code == 0, moved
    assert (moved['changed'], moved['labelled']) == (True, [API])
    assert listed_labels(containerd, namespace)[API] == {'io.cri-containerd.pinned': 'x', 'other': 'kept'}


def test_labels_on_present_images_in_check_mode(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[DB]))
    assert code == 0 and result['labelled'] == []
    code, check = run_module(capsys, args_for(containerd, namespace, store, images=[DB], labels=PINNED), check_mode=True)
    assert code == 0, check
    assert (check['changed'], check['labelled'], check['loaded']) == (True, [DB], [])
    assert listed_labels(containerd, namespace)[DB] == {}  # check mode changed nothing
    code, check = run_module(capsys, args_for(containerd, namespace, store, images=[API], labels=PINNED), check_mode=True)
    assert (check['changed'], check['labelled'], check['loaded']) == (True, [API], [API])


def test_bad_labels_fail(capsys, containerd, namespace, store):
    code, result = run_module(capsys, args_for(containerd, namespace, store, images=[DB], labels={'a,b': 'c'}))
    assert code == 1 and 'labels:' in result['msg'] and 'a,b' in result['msg']


def listed_labels(daemon, namespace):
    """{ref: {label: value}} as ctr lists them (labels with an empty value count as removed)."""
    rc, out, err = daemon.ctr(namespace, 'images', 'ls')
    assert rc == 0, err
    found = {}
    for line in out.splitlines()[1:]:
        fields = line.split()
        labels = {}
        if fields and fields[-1] != '-':
            for item in fields[-1].split(','):
                key, dummy, value = item.partition('=')
                if value:
                    labels[key] = value
        found[fields[0]] = labels
    return found
