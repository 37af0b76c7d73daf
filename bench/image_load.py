# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/image_load: image_load vs ``ctr images import`` of per-image tars, in one run on a test host.

Builds, on this machine, 6 synthetic images sharing one base layer (a 150 MiB "JRE" of random,
incompressible bytes; component layers of 40-80 MiB; uncompressed tar layers as ``docker save``
writes them), twice: as one OCI image layout (the store ``image_load`` reads, blobs stored once)
and as one oci-archive per image, each holding its own copy of the base layer (the equivalent
per-image tars: what ``docker save`` of each image writes, OCI layout as Docker >= 25 does). Same
manifests, so both contenders end with the same image digests.

Starts one systemd test host (ferry-testhost:bookworm-amd64, Molecule's options, a fresh volume on
/var/lib/containerd, the work directory bind-mounted read-only on /bench), installs Debian's
containerd/ctr/shim/runc there (tests/support/testbundle.py's cache) and runs containerd under a
minimal systemd unit. Then, each contender on an empty containerd (stopped, /var/lib/containerd
wiped, started) with the page cache warm for its input:

  a) image_load, first load (``ansible-playbook``, docker connection; the task's duration)
  b) image_load again (nothing to do)
  c) ``ctr images import --platform linux/amd64`` of each per-image tar in turn (timed in the host)
  d) the same imports again
  and, for reference, ``ctr images import`` of ONE oci-archive of all the images, each blob once
  (what image_load streams into ctr, without image_load's checks, staging and tagging), twice.

All unpack into overlayfs (the defaults of each). Prints, per contender, first-load seconds, bytes
read into containerd, rerun seconds and bytes, MiB/s and the ctr/image_load ratios.

Run from the checkout:  .venv/bin/python bench/image_load.py [--scale 0.1] [--keep]
Needs a running Docker engine and the test host image (tests/images/build.sh). Nothing is asserted.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time

from _bench import (  # noqa: E402
    HOST_MOUNT as MOUNT, HOST_NAMESPACE as NAMESPACE, MIB, TESTHOST_IMAGE, Host, bench_prefix, containerd_binaries,
    load_twice, log, mib, ratio, run, scaled_sizes, warm)

from ansible_collections.ferry.airgap.plugins.module_utils._digest import canonical_json  # noqa: E402
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST  # noqa: E402
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore  # noqa: E402

PLATFORM = 'linux/amd64'


# ---------------------------------------------------------------- images

class _Random(object):
    """A file object of ``os.urandom`` bytes (tarfile reads a member's data through it)."""

    def read(self, size=-1):
        return os.urandom(MIB if size is None or size < 0 else size)


def _dir(name):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1704067200
    return info


def write_layer(blob_dir, path, size):
    """An uncompressed tar layer holding ``path`` (``size`` random bytes) as a blob; returns (digest, size)."""
    fd, tmp = tempfile.mkstemp(prefix='.layer-', dir=blob_dir)
    with os.fdopen(fd, 'wb') as out:
        with tarfile.open(fileobj=out, mode='w', format=tarfile.PAX_FORMAT) as tar:
            tar.copybufsize = MIB
            parts = path.split('/')
            for i in range(1, len(parts)):
                tar.addfile(_dir('/'.join(parts[:i])))
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = size, 0o644, 1704067200
            tar.addfile(info, _Random())
    hasher = hashlib.sha256()
    with open(tmp, 'rb') as fh:
        for chunk in iter(lambda: fh.read(MIB), b''):
            hasher.update(chunk)
    digest = 'sha256:' + hasher.hexdigest()
    os.rename(tmp, os.path.join(blob_dir, hasher.hexdigest()))
    return digest, os.path.getsize(os.path.join(blob_dir, hasher.hexdigest()))


def build_images(work, base_size, component_sizes):
    """The OCI layout ``work/store`` and one oci-archive per image in ``work/tars``.

    Returns [(ref, top digest, tar path, {digest: size} of its blobs)].
    """
    store = ImageStore(os.path.join(work, 'store'))
    store.init()
    os.makedirs(os.path.join(work, 'tars'))
    base = write_layer(store.blob_dir, 'opt/java/lib/modules', base_size)
    images = []
    for i, size in enumerate(component_sizes):
        ref = 'registry.bench.local/shop/comp%d:1.0' % i
        layer = write_layer(store.blob_dir, 'opt/comp%d/app.jar' % i, size)
        layers = [base, layer]
        config = canonical_json({
            'architecture': 'amd64', 'os': 'linux', 'created': '2024-01-01T00:00:00Z',
            'config': {'Cmd': ['/opt/java/bin/java', '-jar', '/opt/comp%d/app.jar' % i]},
            'rootfs': {'type': 'layers', 'diff_ids': [d for d, dummy in layers]}})  # uncompressed: diff_id = digest
        config_desc = dict(zip(('digest', 'size'), store.put_bytes(config)), mediaType=MT_OCI_CONFIG)
        manifest = canonical_json({
            'schemaVersion': 2, 'mediaType': MT_OCI_MANIFEST, 'config': config_desc,
            'layers': [{'mediaType': MT_OCI_LAYER, 'digest': d, 'size': n} for d, n in layers]})
        digest, msize = store.put_bytes(manifest)
        desc = {'mediaType': MT_OCI_MANIFEST, 'digest': digest, 'size': msize,
                'platform': {'os': 'linux', 'architecture': 'amd64'}}
        store.set_ref(ref, [desc])
        blobs = dict([(digest, msize), (config_desc['digest'], config_desc['size'])] + layers)
        path = os.path.join(work, 'tars', 'comp%d-1.0.oci.tar' % i)
        write_archive(store, path, [store.entry(ref)], blobs)
        images.append((ref, digest, path, blobs))
        log('image %d: %s + %s layer, tar %s' % (i, mib(base[1]), mib(layer[1]), mib(os.path.getsize(path))))
    return store, images


def write_archive(store, path, tops, blobs):
    """An oci-archive: oci-layout, index.json listing ``tops`` and the ``blobs`` (a per-image tar has its base layer)."""
    index = canonical_json({'schemaVersion': 2, 'mediaType': MT_OCI_INDEX, 'manifests': tops})
    with tarfile.open(path, 'w', format=tarfile.PAX_FORMAT) as tar:
        tar.copybufsize = MIB
        for name, data in (('oci-layout', canonical_json({'imageLayoutVersion': '1.0.0'})), ('index.json', index)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1704067200
            tar.addfile(info, _BytesReader(data))
        for name in ('blobs', 'blobs/sha256'):
            tar.addfile(_dir(name))
        for digest in sorted(blobs):
            blob = store.blob_path(digest)
            info = tarfile.TarInfo('blobs/sha256/' + digest.split(':', 1)[1])
            info.size, info.mode, info.mtime = os.path.getsize(blob), 0o644, 1704067200
            with open(blob, 'rb') as fh:
                tar.addfile(info, fh)


class _BytesReader(object):
    def __init__(self, data):
        self.data, self.pos = data, 0

    def read(self, size=-1):
        end = len(self.data) if size is None or size < 0 else self.pos + size
        chunk, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return chunk


# ---------------------------------------------------------------- the test host (_bench.Host)

def ctr_import(host, tars):
    """``ctr images import`` of each tar in turn, timed inside the host; returns seconds."""
    out = host.sh('set -e; for t in "$@"; do s=$(date +%%s%%N); '
                  'ctr -n %s images import --platform %s "$t" >/dev/null; e=$(date +%%s%%N); echo $((e - s)); done'
                  % (NAMESPACE, PLATFORM), *tars)
    return sum(int(line) for line in out.split()) / 1e9


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--scale', type=float, default=float(os.environ.get('FERRY_BENCH_SCALE', '1')),
                        help='multiply every layer size by this (default 1: 510 MiB of unique blobs; 0.1 for a quick run)')
    parser.add_argument('--base-mib', type=float, default=150, help='shared base layer, MiB (default 150)')
    parser.add_argument('--component-mib', default='40,50,60,70,80,60',
                        help='one image per size (its own layer on the base), MiB, comma-separated (default 40,50,60,70,80,60)')
    parser.add_argument('--rounds', type=int, default=3,
                        help='rounds of all contenders (order alternating); the best time is reported (default 3)')
    parser.add_argument('--workdir', help='parent of the temporary work directory (default: $TMPDIR)')
    parser.add_argument('--cache', help='testbundle.py cache of the Debian packages (default tests/output/cache)')
    parser.add_argument('--keep', action='store_true', help='keep the work directory, the test host and its volume')
    opts = parser.parse_args()
    components, size = scaled_sizes(parser, opts)

    run(['docker', 'info', '--format', '{{.ServerVersion}}'])
    run(['docker', 'image', 'inspect', '--format', '{{.Id}}', TESTHOST_IMAGE])
    work = os.path.realpath(tempfile.mkdtemp(prefix='ferry-bench-imgload-', dir=opts.workdir))
    os.chmod(work, 0o755)
    host = Host(work, '%s-imgload-%d' % (bench_prefix(), os.getpid()))
    try:
        return bench(opts, components, size, work, host)
    finally:
        if opts.keep:
            log('kept %s, host %s and volume %s' % (work, host.name, host.volume))
        else:
            host.remove()
            shutil.rmtree(work, ignore_errors=True)


def bench(opts, components, size, work, host):
    t0 = time.time()
    log('starting test host %s' % host.name)
    host.start()
    versions = containerd_binaries(work, cache=opts.cache)
    log('building %d images in %s' % (len(components), work))
    store, images = build_images(work, size(opts.base_mib), [size(c) for c in components])
    unique = sum(os.path.getsize(store.blob_path(d)) for d in set(d for i in images for d in i[3]))
    per_image = sum(sum(i[3].values()) for i in images)
    tars = [i[2] for i in images]
    tar_bytes = sum(os.path.getsize(t) for t in tars)
    expected = dict((ref, digest) for ref, digest, dummy, dummy in images)
    inventory = host.write_inventory(os.path.join(work, 'hosts.yml'))
    play = host.write_play(os.path.join(work, 'play.yml'), MOUNT + '/store')
    host.wait_booted()
    host.install_containerd()

    whole = os.path.join(work, 'all.oci.tar')  # reference: one tar of all the images, each blob once
    write_archive(store, whole, [store.entry(ref) for ref in sorted(expected)],
                  dict((d, n) for i in images for d, n in i[3].items()))
    whole_bytes = os.path.getsize(whole)
    prep = time.time() - t0

    def via_image_load():
        took, ping, wall, first, loaded, disk, again_took, again_wall, again = load_twice(
            play, inventory, host, [store.blob_path(d) for d in store.blob_digests()])
        if again.get('failed') or again.get('changed') or again['bytes_moved']:
            raise SystemExit('image_load rerun: %s' % json.dumps(again)[:3000])
        extra = 'first run changed=%s loaded %d, rerun changed=%s present %d; ping task %.2f s; ansible-playbook %.1f / %.1f s' % (
            first['changed'], len(first['loaded']), again['changed'], len(again['present']), ping, wall, again_wall)
        return dict(first=took, moved=first['bytes_moved'], again=again_took, again_moved=again['bytes_moved'],
                    images=loaded, disk=disk, extra=extra)

    def via_ctr(paths, nbytes):
        def contender():
            host.fresh_containerd()
            warm(paths)
            inside = ['%s/%s' % (MOUNT, os.path.relpath(path, work)) for path in paths]
            took = ctr_import(host, inside)
            loaded, disk = host.images(), host.disk()
            again = ctr_import(host, inside)
            return dict(first=took, moved=nbytes, again=again, again_moved=nbytes, images=loaded, disk=disk, extra='')
        return contender

    contenders = [('image_load', via_image_load), ('ctr images import', via_ctr(tars, tar_bytes)),
                  ('(ref.) ctr, 1 tar', via_ctr([whole], whole_bytes))]
    results = dict((label, []) for label, dummy in contenders)
    for rnd in range(max(1, opts.rounds)):
        order = contenders if rnd % 2 == 0 else list(reversed(contenders))  # alternate who goes first
        for label, contender in order:
            log('round %d: %s' % (rnd + 1, label))
            results[label].append(contender())

    def best(label, key):
        return min(r[key] for r in results[label])

    print('%d images on %s (%s, overlayfs, unpacked), %s: shared base layer %s, own layers %s' % (
        len(images), TESTHOST_IMAGE, PLATFORM, versions, mib(size(opts.base_mib)), ', '.join(mib(size(c)) for c in components)))
    print('unique blob bytes %s (%d); per image, counting the base each time: %s; sum of the %d tars: %s' % (
        mib(unique), unique, mib(per_image), len(tars), mib(tar_bytes)))
    head = ('contender', 'first load s', 'bytes moved', 'MiB/s', 'rerun s', 'rerun bytes', 'rerun MiB/s')
    line = '%-18s %12s %13s %8s %9s %13s %11s'
    print(line % head)
    print(line % tuple('-' * len(h) for h in head))
    for label, dummy in contenders:
        t1, b1, t2, b2 = best(label, 'first'), results[label][0]['moved'], best(label, 'again'), results[label][0]['again_moved']
        print(line % (label, '%.2f' % t1, b1, '%.1f' % (b1 / float(MIB) / t1), '%.2f' % t2, b2,
                      '%.1f' % (b2 / float(MIB) / t2) if b2 else '-'))
    il, ci = 'image_load', 'ctr images import'
    print('ratio ctr / image_load: first load time %.2f, rerun time %.2f, bytes moved %.2f' % (
        ratio(best(ci, 'first'), best(il, 'first')), ratio(best(ci, 'again'), best(il, 'again')),
        ratio(results[ci][0]['moved'], results[il][0]['moved'])))
    if len(results[il]) > 1:
        firsts = [ratio(c['first'], i['first']) for c, i in zip(results[ci], results[il])]
        agains = [ratio(c['again'], i['again']) for c, i in zip(results[ci], results[il])]
        print('  per round: first load %s; rerun %s' % (
            ', '.join('%.2f' % x for x in firsts), ', '.join('%.2f' % x for x in agains)))
        for label, dummy in contenders:
            print('  %-18s first load s %s; rerun s %s' % (
                label, ', '.join('%.2f' % r['first'] for r in results[label]),
                ', '.join('%.2f' % r['again'] for r in results[label])))
    print('(ref.) = ctr images import of one oci-archive of all %d images, each blob once: not a contender (sites get '
          'per-image tars); it is what the import costs without image_load' % len(images))
    print('image_load: %s; times are task durations (module transfer over the docker connection included)' % (
        results[il][-1]['extra']))
    states = [r['images'] for label in results for r in results[label]]
    disks = [r['disk'] for label in results for r in results[label]]
    print('after every first load: the same %d refs and digests as the store: %s; content store %s, snapshots %s' % (
        len(expected), 'yes' if all(st == expected for st in states) else 'NO',
        ' / '.join(sorted(set(mib(d[0]) for d in disks))), ' / '.join(sorted(set(mib(d[1]) for d in disks)))))
    print('(scale %g; best of %d rounds, alternating order; page cache warm for each contender; containerd stopped, '
          'emptied and restarted before each; setup %.0f s, whole bench %.0f s)' % (
              opts.scale, max(1, opts.rounds), prep, time.time() - t0))
    return 0


if __name__ == '__main__':
    sys.exit(main())
