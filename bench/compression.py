# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/compression: the image store, bundles and loads of compressed layers on REAL content, in one run.

bench/bundle.py uses random layers, which nothing can compress; this one builds layers from files
installed on this machine (_bench.real_layers): a base rootfs from /usr/bin and /usr/lib/x86_64-linux-gnu
(capped at --base-mib), and one component layer per installed Debian package of --packages (their
``dpkg -L`` files, capped at --component-mib each): a "system" of images sharing the base. Each image is
written as a legacy ``docker save`` tar (layer tars with fixed owners and times, written in Python).

Parts (the store part runs unless --no-store; the others when asked):

store     Ferry's store import (``_oci.sync.sync_images``, what ``bundle_images`` runs) with zstd, gzip and
          none. Prints the store's bytes vs the sum of the ``docker save`` tars, vs those tars each
          ``zstd -3`` (the CLI: what a site would get by compressing the tars), vs the unique layers each
          ``zstd -3`` (the floor issue 10 sets the goal against: within 1.05x), vs the unique layers gzip -6
          (what registries hold); import time per compression, a zstd rerun, ImageStore.verify() time.
--bundle  ``playbooks/bundle.yml -e bundle_wheels=false`` of the same images with ``images_compression:
          zstd`` and with ``none``: build wall time, bundle bytes, ``bundle_verify`` time (the module, run
          directly). Then version 2, where ONE component's top layer changes (--change PKG=NEWPKG: the
          layer of PKG's files becomes one of NEWPKG's files), built with bundle_base = the zstd version 1:
          the delta's bytes vs that changed layer compressed with ``zstd -3`` (goal: within 1.05x), and
          whether the delta carries kit/collections/ (it must not: the kit tarball is reproducible).
--load    (implies --bundle) ``image_load`` of the zstd and of the uncompressed bundle's images/ on one
          amd64 systemd test host (_bench.Host: Debian's containerd 1.6.20, overlayfs, unpacked): load
          time, bytes_moved into containerd, rerun, containerd's content store and snapshot bytes.
--arm64   image_load of a small zstd store (--arm64-mib per layer, 2 images) on the arm64 test host
          (ferry-testhost:bookworm-arm64 under qemu): only to show zstd layers import and unpack there.

Run from the checkout:  .venv/bin/python bench/compression.py [--no-store] [--bundle] [--load] [--arm64]
  [--base-mib 150] [--component-mib 120] [--change git=postgresql-15] [--keep]
  [--packages openjdk-17-jre-headless,libpython3.11-stdlib,perl-modules-5.36,git,containerd]
Needs the zstd CLI (/usr/bin/zstd) and the ``zstandard`` package in the venv; --load and --arm64 a running
Docker engine and the test host images (tests/images/build.sh). Nothing is asserted.
"""

import argparse
import gzip
import io
import json
import os
import shutil
import sys
import tempfile
import time

from _bench import (  # noqa: E402
    HOST_MOUNT, MIB, Host, bench_prefix, files_layer, image_load, load_twice, log, mib, package_files, playbook,
    ratio, real_layers, run, timed_call, tree_bytes, verify_module, write_docker_save, write_spec, zstd_cli)

from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore  # noqa: E402
from ansible_collections.ferry.airgap.plugins.module_utils._oci.sync import sync_images  # noqa: E402
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.keys import signing_key  # noqa: E402

DEFAULT_PACKAGES = 'openjdk-17-jre-headless,libpython3.11-stdlib,perl-modules-5.36,git,containerd'
REGISTRY = 'registry.ferry.local/'


def gzip_size(path, level=6):
    out = io.BytesIO()
    with open(path, 'rb') as src, gzip.GzipFile(filename='', mode='wb', fileobj=out, compresslevel=level, mtime=0) as gz:
        shutil.copyfileobj(src, gz, MIB)
    return len(out.getvalue())


def image_tag(package, version):
    return 'bench/%s:%s' % (package.replace('.', '-'), version)


def docker_saves(work, base, components, version='1', arch='amd64'):
    """One ``docker save`` tar per component (base + its layer); returns [(ref, tar path)]."""
    images = []
    for package, layer, dummy in components:
        save = os.path.join(work, '%s-%s.docker.tar' % (package, version))
        tag = image_tag(package, version)
        write_docker_save(save, tag, [base, layer], arch)
        images.append((REGISTRY + tag, save))
    return images


# ---------------------------------------------------------------- part: store

def store_part(work, base, base_bytes, components, images):
    specs = [{'ref': ref, 'docker_archive': save} for ref, save in images]
    saves = [save for dummy, save in images]
    unique = [base] + [c[1] for c in components]
    raw_unique = sum(os.path.getsize(p) for p in unique)
    saves_bytes = sum(os.path.getsize(p) for p in saves)
    log('zstd -3 of the docker save tars and of the unique layers; gzip -6 of the unique layers')
    saves_zstd = sum(zstd_cli(p) for p in saves)
    unique_zstd = sum(zstd_cli(p) for p in unique)
    unique_gzip = sum(gzip_size(p) for p in unique)

    stores, times = {}, {}
    for compression in ('zstd', 'gzip', 'none'):
        log('Ferry store import, %s' % compression)
        store = ImageStore(os.path.join(work, 'store-' + compression))
        store.init()
        dummy, times[compression] = timed_call(lambda: sync_images(store, specs, ['x86_64'], compression))
        stores[compression] = tree_bytes(store.path)
    again = ImageStore(os.path.join(work, 'store-zstd'))
    dummy, rerun_time = timed_call(lambda: sync_images(again, specs, ['x86_64'], 'zstd'))
    verify_zstd = timed_call(lambda: ImageStore(os.path.join(work, 'store-zstd')).verify())
    verify_none = timed_call(lambda: ImageStore(os.path.join(work, 'store-none')).verify())
    for compression in stores:
        shutil.rmtree(os.path.join(work, 'store-' + compression))

    print('\n== store: %d images sharing a %s base layer (real files of this machine)' % (len(components), mib(base_bytes)))
    for package, dummy, content in components:
        print('  component %-28s %s of files' % (package, mib(content)))
    print('  unique layers (tar): %s\n' % mib(raw_unique))
    rows = [
        ('sum of docker save tars', saves_bytes),
        ('docker save tars, each zstd -3 (CLI)', saves_zstd),
        ('unique layers, each zstd -3 (CLI)', unique_zstd),
        ('unique layers, each gzip -6', unique_gzip),
        ('Ferry store, zstd (default)', stores['zstd']),
        ('Ferry store, gzip', stores['gzip']),
        ('Ferry store, none (before issue 10)', stores['none']),
    ]
    print('%-40s %12s %14s %16s' % ('', 'bytes', 'store zstd / x', 'x / unique zstd'))
    for label, value in rows:
        print('%-40s %12s %14.2f %16.3f' % (label, mib(value), ratio(stores['zstd'], value), ratio(value, unique_zstd)))
    print('\nimport time: zstd %.1f s, gzip %.1f s, none %.1f s; rerun zstd %.2f s (%d bytes written)' % (
        times['zstd'], times['gzip'], times['none'], rerun_time, again.bytes_written))
    print('ImageStore.verify: zstd store %.2f s (%d problems), uncompressed store %.2f s (%d problems)' % (
        verify_zstd[1], len(verify_zstd[0]), verify_none[1], len(verify_none[0])))
    print('goal (issue 10): Ferry zstd store within 1.05x of the unique layers zstd -3: %.3fx; '
          '%.2fx smaller than the uncompressed store' % (ratio(stores['zstd'], unique_zstd),
                                                         ratio(stores['none'], stores['zstd'])))


# ---------------------------------------------------------------- part: bundles and the delta

def build(work, name, version, images, compression, common, base=None):
    """bundle.yml of ``images``; returns {'dir', 'build', 'bytes', 'images_bytes'} (and the delta's dir with a base)."""
    spec = write_spec(os.path.join(work, 'spec-%s.yml' % name), version, images, compression)
    dest = os.path.join(work, 'out', name)
    args = ['playbooks/bundle.yml', '-e', 'bundle_spec=' + spec, '-e', 'bundle_dest=' + dest] + common
    if base:
        args += ['-e', 'bundle_base=' + base]
    log('bundle.yml %s (images_compression: %s%s)' % (name, compression, ', bundle_base=' + os.path.basename(base) if base else ''))
    wall = playbook(args)
    return {'dir': dest, 'build': wall, 'bytes': tree_bytes(dest), 'images_bytes': tree_bytes(os.path.join(dest, 'images'))}


def bundle_part(opts, work, base, components, images):
    os.makedirs(os.path.join(work, 'out'))
    key, signers = signing_key(work, 'bench@ferry')
    common = ['-e', 'bundle_wheels=false', '-e', 'bundle_signing_key=' + key, '-e', 'bundle_signing_identity=bench@ferry']
    bundles = {}
    for compression in ('zstd', 'none'):
        built = build(work, 'bench-1-' + compression, '1', images, compression, common)
        result, wall = verify_module(built['dir'], signers, work)
        built.update(verify=result['seconds'], verify_wall=wall, checked=result['bytes_checked'])
        bundles[compression] = built

    # version 2: one component's top layer changes
    old, dummy, new = opts.change.partition('=')
    which = [i for i, c in enumerate(components) if c[0] == old]
    if not which or not new:
        raise SystemExit('--change %s: need PKG=NEWPKG with PKG one of the components (%s)' % (
            opts.change, ', '.join(c[0] for c in components)))
    changed = which[0]
    layer2 = os.path.join(work, 'changed-%s.tar' % new)
    files = package_files(new)
    if not files:
        raise SystemExit('--change: %s is not installed' % new)
    content2 = files_layer(layer2, files, int(opts.component_mib * MIB))
    save2 = os.path.join(work, '%s-2.docker.tar' % old)
    tag2 = image_tag(old, '2')
    write_docker_save(save2, tag2, [base, layer2])
    images2 = list(images)
    images2[changed] = (REGISTRY + tag2, save2)
    v2 = build(work, 'bench-2-zstd', '2', images2, 'zstd', common, base=bundles['zstd']['dir'])
    delta = v2['dir'] + '-delta'
    with open(os.path.join(delta, 'manifest.json')) as f:
        manifest = json.load(f)
    present = manifest['delta']['present']
    blobs = [rel for rel in present if rel.startswith('images/blobs/')]
    blob_bytes = sum(manifest['files'][rel]['size'] for rel in blobs)
    others = sorted(rel for rel in present if not rel.startswith('images/blobs/'))
    kit_collections = [rel for rel in present if rel.startswith('kit/collections/')]
    layer2_raw, layer2_zstd = os.path.getsize(layer2), zstd_cli(layer2)
    delta_bytes = tree_bytes(delta)
    largest = max(manifest['files'][rel]['size'] for rel in blobs) if blobs else 0

    print('\n== bundles: playbooks/bundle.yml -e bundle_wheels=false, %d images (the store part\'s), signed' % len(images))
    head = ('images_compression', 'build s', 'bundle bytes', 'of which images/', 'bundle_verify s', 'verify wall s', 'hashed')
    line = '%-18s %8s %13s %16s %15s %13s %11s'
    print(line % head)
    print(line % tuple('-' * len(h) for h in head))
    for compression in ('zstd', 'none'):
        b = bundles[compression]
        print(line % (compression, '%.1f' % b['build'], mib(b['bytes']), mib(b['images_bytes']), '%.2f' % b['verify'],
                      '%.2f' % b['verify_wall'], mib(b['checked'])))
    z, n = bundles['zstd'], bundles['none']
    print('ratio none / zstd: build %.2f, bundle bytes %.2f, bundle_verify %.2f' % (
        ratio(n['build'], z['build']), ratio(n['bytes'], z['bytes']), ratio(n['verify'], z['verify'])))

    print('\n== one-component delta: %s v2 = base + files of %s (%s of files, layer tar %s) instead of %s\'s files' % (
        old, new, mib(content2), mib(layer2_raw), old))
    print('  v2 build (full bundle + delta, bundle_base = v1 zstd): %.1f s' % v2['build'])
    rows = [
        ('delta (whole directory)', delta_bytes),
        ('  of which image blobs (%d)' % len(blobs), blob_bytes),
        ('  of which the changed layer (largest blob)', largest),
        ('changed layer, zstd -3 (CLI)', layer2_zstd),
        ('changed layer, tar', layer2_raw),
    ]
    print('  %-44s %12s %18s' % ('', 'bytes', 'x / layer zstd -3'))
    for label, value in rows:
        print('  %-44s %12s %18.3f' % (label, mib(value), ratio(value, layer2_zstd)))
    print('  goal (issue 10): delta within 1.05x of the changed layer zstd -3: %.3fx' % ratio(delta_bytes, layer2_zstd))
    print('  delta carries kit/collections/: %s' % ('YES: ' + ', '.join(kit_collections) if kit_collections else 'no'))
    print('  delta files other than image blobs (%d): %s' % (len(others), ', '.join(others) or '-'))
    return bundles


# ---------------------------------------------------------------- part: image_load on test hosts

def load_bundles(opts, work, bundles):
    host = Host(work, '%s-compression-%d' % (bench_prefix(), os.getpid()))
    try:
        log('starting test host %s' % host.name)
        versions = host.boot_with_containerd(opts.cache)
        inventory = host.write_inventory(os.path.join(work, 'hosts.yml'))
        rows = {}
        for compression in ('zstd', 'none'):
            store_dir = os.path.join(bundles[compression]['dir'], 'images')
            store = ImageStore(store_dir)
            expected = store.refs()
            play = host.write_play(os.path.join(work, 'load-%s.yml' % compression),
                                   '%s/%s' % (HOST_MOUNT, os.path.relpath(store_dir, work)))
            best = None
            for rnd in range(max(1, opts.rounds)):
                log('image_load, %s bundle, round %d' % (compression, rnd + 1))
                took, ping, dummy, first, loaded, disk, again_took, dummy, again = load_twice(
                    play, inventory, host, [store.blob_path(d) for d in store.blob_digests()])
                row = dict(first=took, moved=first['bytes_moved'], again=again_took, again_moved=again['bytes_moved'],
                           same=loaded == expected, content=disk[0], snapshots=disk[1], ping=ping)
                if best is None or row['first'] < best['first']:
                    best = row
            rows[compression] = best
    finally:
        if not opts.keep:
            host.remove()
    print('\n== image_load of each bundle\'s images/ on %s (%s, overlayfs, unpacked), %s; best of %d' % (
        host.image, host.platform, versions, max(1, opts.rounds)))
    head = ('images_compression', 'load s', 'bytes moved', 'MiB/s moved', 'rerun s', 'rerun bytes', 'refs ok',
            'content store', 'snapshots')
    line = '%-18s %7s %12s %11s %8s %11s %7s %13s %11s'
    print(line % head)
    print(line % tuple('-' * len(h) for h in head))
    for compression in ('zstd', 'none'):
        r = rows[compression]
        print(line % (compression, '%.2f' % r['first'], mib(r['moved']), '%.1f' % (r['moved'] / float(MIB) / r['first']),
                      '%.2f' % r['again'], r['again_moved'], 'yes' if r['same'] else 'NO', mib(r['content']),
                      mib(r['snapshots'])))
    z, n = rows['zstd'], rows['none']
    print('ratio none / zstd: load time %.2f, bytes moved %.2f, content store %.2f (times are the task\'s duration, '
          'module transfer included; a ping task takes %.2f s)' % (
              ratio(n['first'], z['first']), ratio(n['moved'], z['moved']), ratio(n['content'], z['content']), z['ping']))


def arm64_part(opts, work):
    sub = os.path.join(work, 'arm64')
    os.makedirs(sub)
    packages = [p.strip() for p in opts.packages.split(',') if p.strip()][:2]
    (base, dummy), components = real_layers(sub, opts.arm64_mib, opts.arm64_mib, packages)
    images = docker_saves(sub, base, components, arch='arm64')
    store = ImageStore(os.path.join(sub, 'store'))
    store.init()
    sync_images(store, [{'ref': ref, 'docker_archive': save} for ref, save in images], ['aarch64'], 'zstd')
    zstd_layers = 0
    for digest in store.blob_digests():
        with open(store.blob_path(digest), 'rb') as fh:
            head = fh.read(4)
        zstd_layers += head == b'\x28\xb5\x2f\xfd'
    expected = store.refs()
    host = Host(work, '%s-compression-arm64-%d' % (bench_prefix(), os.getpid()), 'arm64')
    t0 = time.time()
    try:
        log('starting arm64 test host %s (qemu)' % host.name)
        versions = host.boot_with_containerd(opts.cache)
        booted = time.time() - t0
        host.fresh_containerd()
        inventory = host.write_inventory(os.path.join(work, 'hosts-arm64.yml'))
        play = host.write_play(os.path.join(work, 'load-arm64.yml'), HOST_MOUNT + '/arm64/store')
        took, ping, wall, first = image_load(play, inventory, host)
        failed = first.get('failed') and first.get('msg')
        loaded, disk = host.images(), host.disk()
        arch = host.sh('uname -m').strip()
    finally:
        if not opts.keep:
            host.remove()
    print('\n== arm64: image_load of %d images (zstd store, %d zstd blobs, %s) on %s (%s under qemu, uname -m %s), %s' % (
        len(expected), zstd_layers, mib(tree_bytes(store.path)), host.image, host.platform, arch, versions))
    print('  %s; load %.1f s (ping task %.1f s), %s moved; refs and digests as the store: %s; content store %s, '
          'snapshots %s (unpacked); host start + containerd %.0f s' % (
              'FAILED: %s' % failed if failed else 'loaded %d' % len(first.get('loaded', [])), took, ping,
              mib(first.get('bytes_moved', 0)), 'yes' if loaded == expected else 'NO %r' % loaded, mib(disk[0]),
              mib(disk[1]), booted))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--base-mib', type=float, default=150, help='base layer content cap, MiB (default 150)')
    parser.add_argument('--component-mib', type=float, default=120, help='component layer content cap, MiB (default 120)')
    parser.add_argument('--packages', default=DEFAULT_PACKAGES, help='one component per installed package')
    parser.add_argument('--no-store', action='store_true', help='skip the store part')
    parser.add_argument('--bundle', action='store_true', help='bundles zstd vs none, and the one-component delta')
    parser.add_argument('--change', default='git=postgresql-15',
                        help='PKG=NEWPKG: version 2 of component PKG has the files of NEWPKG (default git=postgresql-15)')
    parser.add_argument('--load', action='store_true', help='image_load of both bundles on an amd64 test host (implies --bundle)')
    parser.add_argument('--rounds', type=int, default=1, help='image_load rounds per bundle, best reported (default 1)')
    parser.add_argument('--arm64', action='store_true', help='image_load of a small zstd store on the arm64 test host (qemu)')
    parser.add_argument('--arm64-mib', type=float, default=8, help='layer content cap of the arm64 part, MiB (default 8)')
    parser.add_argument('--cache', help='testbundle.py cache of the Debian packages (default tests/output/cache)')
    parser.add_argument('--workdir', help='parent of the temporary work directory (default: $TMPDIR)')
    parser.add_argument('--keep', action='store_true', help='keep the work directory (and test hosts)')
    opts = parser.parse_args()
    opts.bundle = opts.bundle or opts.load
    if opts.load or opts.arm64:
        run(['docker', 'info', '--format', '{{.ServerVersion}}'])
    t0 = time.time()
    work = os.path.realpath(tempfile.mkdtemp(prefix='ferry-bench-compression-', dir=opts.workdir))
    os.chmod(work, 0o755)
    try:
        if not opts.no_store or opts.bundle:
            (base, base_bytes), components = real_layers(
                work, opts.base_mib, opts.component_mib, [p.strip() for p in opts.packages.split(',') if p.strip()])
            images = docker_saves(work, base, components)
        if not opts.no_store:
            store_part(work, base, base_bytes, components, images)
        if opts.bundle:
            bundles = bundle_part(opts, work, base, components, images)
            if opts.load:
                load_bundles(opts, work, bundles)
        if opts.arm64:
            arm64_part(opts, work)
        print('\n(one run; whole bench %.0f s)' % (time.time() - t0))
    finally:
        if opts.keep:
            log('kept %s' % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
