# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_containerd.Ctr against a real, private containerd 1.6, and the ctr behaviours it relies on."""

import io
import os
import socket
import tarfile
import time

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._runtime import containerd as C
from ansible_collections.ferry.airgap.plugins.module_utils._cli import Runner, run_stream
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import CONTAINERD_ANNOTATION
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import chain_id, layout_tar, platform_plan

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.containerd import short_tmpdir
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import build_store, corrupt, manifest_of, random_layer

WEB = 'registry.ferry.local/demo/web:1.0'
API = 'registry.ferry.local/demo/api:2.1'


def ctr_for(daemon, ns, runner=None):
    return C.Ctr(['ctr'], daemon.address, ns, runner)


@pytest.fixture
def store(tmp_path):
    base = random_layer('base', 300000)
    return build_store(tmp_path / 'store', {
        WEB: [('amd64', [base, random_layer('web', 200000)], None), ('arm64', [base, random_layer('web', 100000)], 'v8')],
        API: [('amd64', [base, random_layer('api', 1000)], None)],
    })


def test_empty_namespace(containerd, namespace):
    ctr = ctr_for(containerd, namespace)
    ctr.check_socket()
    assert (ctr.images(), ctr.content(), ctr.snapshots()) == ({}, {}, set())


def test_load_reads_back_and_cleans_staging(containerd, namespace, store):
    ctr = ctr_for(containerd, namespace)
    plans = [platform_plan(store, ref, 'linux/amd64') for ref in (WEB, API)]
    # a staging name left by an interrupted run
    leftover = C.staging_name('old:1', store.entry(API)['digest'])
    stream = layout_tar(store, ctr._index([plans[1]], [leftover]), plans[1]['blobs'])
    assert run_stream(ctr.base + ['images', 'import', '--platform', 'linux/amd64', '-'], stream)[0] == 0
    assert set(ctr.images()) == {leftover}
    held = ctr.content()
    blobs = [b for p in plans for b in p['blobs'] if b[0] not in held]
    blobs = [b for i, b in enumerate(blobs) if b[0] not in [x[0] for x in blobs[:i]]]
    sent = []
    ctr.load(store, plans, blobs, 'linux/amd64', progress=sent.append)
    assert sum(sent) == sum(b[1] for b in blobs) and len(sent) == len(blobs)
    images = ctr.images()
    assert images == {WEB: store.entry(WEB)['digest'], API: store.entry(API)['digest']}
    content, snapshots = ctr.content(), ctr.snapshots()
    for plan in plans:
        assert ctr.is_loaded(plan, images, content, snapshots)
        assert plan['chain_id'] in snapshots
    # the index's garbage collection labels reference the loaded platform's manifest
    web_index = content[store.entry(WEB)['digest']]
    assert plans[0]['manifests'][0]['digest'] in web_index.values()
    assert all(k.startswith(C.GC_CONTENT_LABEL) for k in web_index)


def test_load_resends_content_collected_after_the_listing(containerd, namespace, store):
    ctr = ctr_for(containerd, namespace)
    plan = platform_plan(store, API, 'linux/amd64')
    ctr.load(store, [plan], plan['blobs'], 'linux/amd64')
    held = ctr.content()
    ctr.remove([API])  # its content goes, but the listing says it is there
    assert containerd.wait_gc(namespace, [b[0] for b in plan['blobs']])
    sent = []
    ctr.load(store, [plan], [b for b in plan['blobs'] if b[0] not in held], 'linux/amd64', progress=sent.append)
    assert len(sent) == len(plan['blobs'])  # first import failed (not found), the retry sent everything
    assert ctr.is_loaded(plan, ctr.images(), ctr.content(), ctr.snapshots())


class _ScriptedRunner(object):
    """Answers ``images import`` from a script of (rc, stderr) and counts the blobs each import carried."""

    def __init__(self, imports):
        self.imports = list(imports)
        self.members = []

    def run(self, argv):
        return 0, 'REF TYPE DIGEST SIZE PLATFORMS LABELS\n', ''

    def stream(self, argv, chunks):
        data = b''.join(chunks)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            self.members.append(len([n for n in tar.getnames() if n.startswith('blobs/')]))
        rc, err = self.imports.pop(0)
        return rc, '', err


PARENT_GONE = ('ctr: failed to prepare extraction snapshot "extract-1 sha256:%s": parent snapshot sha256:%s does '
               'not exist: not found\n' % ('1' * 64, '2' * 64))


def test_load_retries_with_every_blob_when_a_parent_snapshot_was_collected(store):
    plan = platform_plan(store, WEB, 'linux/arm64')
    runner = _ScriptedRunner([(1, PARENT_GONE), (0, ''), (0, '')])
    C.Ctr(['ctr'], '/run/x.sock', 'ns', runner).load(store, [plan], plan['blobs'][:1], 'linux/arm64')
    assert runner.members == [1, len(plan['blobs']), 0]  # first import, the retry with everything, the tagging


def test_load_does_not_retry_other_failures(store):
    plan = platform_plan(store, WEB, 'linux/arm64')
    runner = _ScriptedRunner([(1, 'ctr: failed to extract layer: invalid tar header\n')])
    with pytest.raises(C.ContainerdError, match='invalid tar header'):
        C.Ctr(['ctr'], '/run/x.sock', 'ns', runner).load(store, [plan], plan['blobs'][:1], 'linux/arm64')
    assert runner.members == [1]


def test_is_loaded_conditions():
    top = {'digest': 'sha256:top', 'size': 1}
    plan = {'ref': 'r', 'top': top, 'manifests': [{'digest': 'sha256:m'}], 'chain_id': 'sha256:chain',
            'blobs': [('sha256:top', 1, 'index'), ('sha256:m', 1, 'manifest'), ('sha256:c', 1, 'config'),
                      ('sha256:l', 1, 'layer')]}
    images = {'r': 'sha256:top'}
    content = {'sha256:top': {C.GC_CONTENT_LABEL + 'm.0': 'sha256:m'}, 'sha256:m': {}, 'sha256:c': {}, 'sha256:l': {}}
    snapshots = {'sha256:chain'}
    assert C.Ctr.is_loaded(plan, images, content, snapshots)
    assert C.Ctr.is_loaded(plan, images, content, None)  # unpack not asked
    assert not C.Ctr.is_loaded(plan, {'r': 'sha256:other'}, content, snapshots)
    assert not C.Ctr.is_loaded(plan, {}, content, snapshots)
    assert not C.Ctr.is_loaded(plan, images, dict((k, v) for k, v in content.items() if k != 'sha256:l'), snapshots)
    assert not C.Ctr.is_loaded(plan, images, content, set())
    other_platform = dict(content, **{'sha256:top': {C.GC_CONTENT_LABEL + 'm.0': 'sha256:arm'}})
    assert not C.Ctr.is_loaded(plan, images, other_platform, snapshots)


def test_check_socket(tmp_path):
    ctr = C.Ctr(['ctr'], str(tmp_path / 'none.sock'), 'ns', Runner())
    with pytest.raises(C.ContainerdError, match='^containerd is not running: its socket .*none.sock does not exist'):
        ctr.check_socket()
    regular = tmp_path / 'file'
    regular.write_text('')
    with pytest.raises(C.ContainerdError, match='is not a socket'):
        C.Ctr(['ctr'], str(regular), 'ns', Runner()).check_socket()


def test_stale_socket_says_containerd_is_not_running():
    base = short_tmpdir('ferry-stale-')
    path = os.path.join(base, 's.sock')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.close()
    try:
        with pytest.raises(C.ContainerdError) as info:
            C.Ctr(['ctr'], path, 'ns', Runner()).images()
    finally:
        os.unlink(path)
        os.rmdir(base)
    assert info.value.msg.startswith('cannot reach containerd at %s: containerd is not running' % path)
    assert info.value.details['rc'] != 0


@pytest.mark.parametrize('stderr, expected', [
    ('ctr: failed to ingest "blobs/sha256/ab": failed to copy: failed to send write: write '
     '/var/lib/containerd/io.containerd.content.v1.content/ingest/12/data: no space left on device: unknown',
     'disk full: containerd ran out of space writing /var/lib/containerd/io.containerd.content.v1.content/ingest/12/data '
     '(containerd root /var/lib/containerd'),
    ('ctr: failed to extract layer sha256:1: write /r/io.containerd.snapshotter.v1.overlayfs/snapshots/7/fs/x1: '
     'no space left on device: unknown',
     'disk full: containerd ran out of space writing /r/io.containerd.snapshotter.v1.overlayfs/snapshots/7/fs/x1 '
     '(containerd root /r'),
    ('ctr: something: no space left on device', "disk full: containerd ran out of space writing the filesystem holding"),
    ('ctr: failed to dial "/run/x.sock": connection error: desc = "transport: error while dialing: dial unix '
     '/run/x.sock: connect: permission denied"', 'permission denied on containerd socket /run/x.sock: run as root'),
    ('ctr: failed to dial "/run/x.sock": connection refused', 'cannot reach containerd at /run/x.sock'),
    ('ctr: image might be filtered out', 'the step failed (ctr -a /run/x.sock -n ns images import exited with 1): '
     'ctr: image might be filtered out'),
])
def test_error_messages(stderr, expected):
    ctr = C.Ctr(['ctr'], '/run/x.sock', 'ns', Runner())
    argv = ctr.base + ['images', 'import', '-']
    error = ctr._error(argv, 1, '', stderr, 'the step')
    assert error.msg.startswith(expected)
    assert error.details == dict(cmd=argv, rc=1, stdout='', stderr=stderr)


class _FixedRunner(Runner):
    """A runner whose every command answers the same."""

    def __init__(self, *answer):
        Runner.__init__(self)
        self.answer = answer

    def run(self, argv, data=None, cwd=None, check_rc=False):
        return self.answer


def test_unparseable_images_output():
    ctr = C.Ctr(['ctr'], '/x', 'ns', _FixedRunner(0, 'NAME DIGEST\n', ''))
    with pytest.raises(C.ContainerdError, match='unexpected output of ctr images ls'):
        ctr.images()


class _OldCtrRunner(object):
    """ctr 1.5 (k3s v1.22): images import has no --platform; records the import argv."""
    HELP = 'USAGE:\n   ctr images import [command options] [flags] <in>\nOPTIONS:\n   --all-platforms\n   --no-unpack\n'

    def __init__(self):
        self.argvs = []

    def run(self, argv):
        if argv[-3:] == ['images', 'import', '--help']:
            return 0, self.HELP, ''
        return 0, 'REF TYPE DIGEST SIZE PLATFORMS LABELS\n', ''

    def stream(self, argv, chunks):
        for dummy in chunks:
            pass
        self.argvs.append(argv)
        return 0, '', ''


def test_ctr_without_import_platform_flag_loads_the_host_platform_only(store):
    plan = platform_plan(store, API, 'linux/amd64')
    runner = _OldCtrRunner()
    ctr = C.Ctr(['k3s', 'ctr'], C.K3S_ADDRESS, 'k8s.io', runner, host_platform='linux/amd64')
    ctr.load(store, [plan], plan['blobs'], 'linux/amd64')
    assert len(runner.argvs) == 2 and all('--platform' not in argv for argv in runner.argvs)
    assert runner.argvs[0][-3:] == ['images', 'import', '-']
    arm = platform_plan(store, WEB, 'linux/arm64')
    with pytest.raises(C.ContainerdError, match='cannot import platform linux/arm64: .* no --platform'):
        C.Ctr(['k3s', 'ctr'], C.K3S_ADDRESS, 'k8s.io', _OldCtrRunner(), host_platform='linux/amd64').load(
            store, [arm], arm['blobs'], 'linux/arm64')


def test_real_ctr_has_the_import_platform_flag(containerd, namespace):
    assert ctr_for(containerd, namespace).has_platform_flag() is True


def test_listing_reads_labels_after_a_size_with_a_space():
    out = ('REF TYPE DIGEST SIZE PLATFORMS LABELS\n'
           'a:1 application/vnd.oci.image.index.v1+json sha256:%s 1.2 MiB linux/amd64,linux/arm64 '
           'io.cri-containerd.image=managed,io.cri-containerd.pinned=pinned\n'
           'b:2 application/vnd.oci.image.manifest.v1+json sha256:%s 700.0 KiB linux/amd64 -\n') % ('a' * 64, 'b' * 64)
    ctr = C.Ctr(['ctr'], '/x', 'ns', _FixedRunner(0, out, ''))
    assert ctr.images() == {'a:1': 'sha256:' + 'a' * 64, 'b:2': 'sha256:' + 'b' * 64}
    assert ctr.image_labels() == {'a:1': {'io.cri-containerd.image': 'managed', 'io.cri-containerd.pinned': 'pinned'},
                                  'b:2': {}}


def test_label_keeps_other_labels(containerd, namespace, store):
    ctr = ctr_for(containerd, namespace)
    plan = platform_plan(store, API, 'linux/amd64')
    ctr.load(store, [plan], plan['blobs'], 'linux/amd64')
    assert ctr.image_labels() == {API: {}}
    ctr.label(API, {'keep': 'me'})
    ctr.label(API, {'io.cri-containerd.pinned': 'pinned'})
    assert ctr.image_labels() == {API: {'keep': 'me', 'io.cri-containerd.pinned': 'pinned'}}
    assert ctr.images() == {API: store.entry(API)['digest']}


def test_staging_name_is_a_valid_reference_and_stable():
    name = C.staging_name(WEB, 'sha256:' + 'ab' * 32)
    assert name == C.staging_name(WEB, 'sha256:' + 'ab' * 32)
    assert name.startswith(C.STAGING_PREFIX) and name.endswith(':' + 'ab' * 8)
    assert name != C.staging_name(API, 'sha256:' + 'ab' * 32)


# ---------------------------------------------------------------- ctr 1.6 behaviours this code relies on

def _import(ctr, chunks, platform='linux/amd64'):
    return run_stream(ctr.base + ['images', 'import', '--platform', platform, '-'], chunks)


def _named_index(plan, name):
    desc = dict((k, v) for k, v in plan['top'].items() if k != 'annotations')
    desc['annotations'] = {CONTAINERD_ANNOTATION: name}
    return {'schemaVersion': 2, 'manifests': [desc]}


def test_ctr_tags_an_image_whose_layer_is_corrupt(containerd, namespace, store):
    """Why the stream is hashed here: ctr stores the bad layer under its real digest and tags the image."""
    ctr = ctr_for(containerd, namespace)
    layer = manifest_of(store, API, 'amd64')['layers'][1]['digest']
    corrupt(store, layer, offset=50)
    plan = platform_plan(store, API, 'linux/amd64')
    with open(store.blob_path(layer), 'rb') as fh:
        data = fh.read()
    clean = [b for b in plan['blobs'] if b[0] != layer]

    def chunks():  # the corrupt layer sent as if it were fine
        for chunk in layout_tar(store, _named_index(plan, API), clean):
            if chunk == b'\0' * 1024:
                info = tarfile.TarInfo('blobs/sha256/' + layer[7:])
                info.size = len(data)
                yield info.tobuf(tarfile.PAX_FORMAT) + data + b'\0' * ((512 - len(data) % 512) % 512)
            yield chunk

    rc, out, err = _import(ctr, chunks())
    assert rc != 0 and 'failed to extract layer' in err  # only the unpack notices...
    assert set(ctr.images()) == {API}  # ...after the image was tagged


def test_ctr_takes_a_tar_cut_at_a_member_boundary_for_complete(containerd, namespace, store):
    """Why an abort cuts inside a block: without the last layer and the end blocks, ctr still tags."""
    ctr = ctr_for(containerd, namespace)
    plan = platform_plan(store, API, 'linux/amd64')
    chunks = list(layout_tar(store, _named_index(plan, API), plan['blobs'][:-1]))[:-1]
    rc, out, err = _import(ctr, iter(chunks))
    assert set(ctr.images()) == {API}
    assert rc != 0 and 'not found' in err
    ctr.remove([API])
    # the same stream cut inside a block: nothing tagged
    rc, out, err = _import(ctr, iter(chunks + [b'\0' * 256]))
    assert rc != 0 and 'unexpected EOF' in err
    assert ctr.images() == {}


def test_other_platform_import_drops_the_first(containerd, namespace, store):
    """Importing arm64 of an index loaded for amd64 re-labels the index: amd64 content is collected."""
    ctr = ctr_for(containerd, namespace)
    amd = platform_plan(store, WEB, 'linux/amd64')
    ctr.load(store, [amd], amd['blobs'], 'linux/amd64')
    assert ctr.is_loaded(amd, ctr.images(), ctr.content(), ctr.snapshots())
    arm = platform_plan(store, WEB, 'linux/arm64')
    held = ctr.content()
    ctr.load(store, [arm], [b for b in arm['blobs'] if b[0] not in held], 'linux/arm64')
    amd_only = [b[0] for b in amd['blobs'] if b[0] not in [x[0] for x in arm['blobs']]]
    assert containerd.wait_gc(namespace, amd_only)
    assert not ctr.is_loaded(amd, ctr.images(), ctr.content(), ctr.snapshots())
    assert ctr.is_loaded(arm, ctr.images(), ctr.content(), ctr.snapshots())
    config = store.read_json(manifest_of(store, WEB, 'amd64')['config']['digest'])
    top_snapshot = chain_id(config['rootfs']['diff_ids'])
    deadline = time.time() + 10
    while top_snapshot in ctr.snapshots() and time.time() < deadline:
        time.sleep(0.1)
    assert top_snapshot not in ctr.snapshots()
