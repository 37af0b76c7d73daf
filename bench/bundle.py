# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/bundle: size and speed of Ferry bundles, measured in one run against plain tools.

Builds synthetic images with the local Docker engine (no pull, no build): a JRE-sized base
layer of random (incompressible) bytes imported with ``docker import``, and one component
image per size on top of it (``docker create`` + ``docker cp`` + ``docker commit``), each
written to its own ``docker save`` tar. Then runs ``playbooks/bundle.yml`` on them and prints:

1. bundle bytes vs the sum of the per-image ``docker save`` tars (blobs stored once);
2. delta bytes for a one-component change (a new top layer on one image) vs that layer;
3. ``bundle_verify`` throughput vs ``sha256sum`` over the same files (page cache warm).

The bundle is built with the compression users get (the spec's images_compression default, zstd;
--compression sets another). Random bytes do not compress, so this bench cannot show layer
compression and the zstd pass costs build time for nothing: it prints how much.
bench/compression.py measures compression (store, one-component delta, load) on real content.

Run from the checkout:  .venv/bin/python bench/bundle.py [--scale 0.1] [--compression none] [--keep]
Sizes in MiB scale with --scale. Nothing is asserted: it prints figures.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from _bench import (  # noqa: E402
    MIB, bench_prefix, log, mib, playbook, random_file, ratio, run, scaled_sizes, tree_bytes, verify_module, write_spec)

from ansible_collections.ferry.airgap.plugins.module_utils._oci.compress import compressor  # noqa: E402
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.keys import signing_key  # noqa: E402


class Docker(object):
    """The docker CLI, remembering what it created so cleanup removes exactly that."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.images = []
        self.containers = []

    def import_base(self, rootfs_tar, tag):
        run(['docker', 'import', '-c', 'CMD ["/opt/bench/run"]', rootfs_tar, tag])
        self.images.append(tag)

    def layer_on(self, image, src_dir, dest, tag):
        """A new image ``tag``: ``image`` plus ``src_dir`` copied to ``dest`` (one new layer)."""
        name = '%s-ctr-%d' % (self.prefix, len(self.containers))
        run(['docker', 'create', '--name', name, image])
        self.containers.append(name)
        run(['docker', 'cp', src_dir, '%s:%s' % (name, dest)])
        run(['docker', 'commit', name, tag])
        self.images.append(tag)
        run(['docker', 'rm', name])
        self.containers.remove(name)

    def save(self, tag, path):
        run(['docker', 'save', '-o', path, tag])
        return os.path.getsize(path)

    def cleanup(self):
        for name in list(self.containers):
            subprocess.call(['docker', 'rm', '-f', name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for tag in reversed(self.images):
            subprocess.call(['docker', 'rmi', tag], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def save_layers(archive):
    """{diff_id: layer size} of the single image in a ``docker save`` tar (member names differ per image)."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile('manifest.json'))
        config = json.load(tar.extractfile(manifest[0]['Config']))
        sizes = dict((m.name, m.size) for m in tar.getmembers() if m.isfile())
    return dict(zip(config['rootfs']['diff_ids'], [sizes[name] for name in manifest[0]['Layers']]))


def compress_speed(compression, nbytes=64 * MIB):
    """MiB/s of Ferry's layer compressor (_oci.compress) over ``nbytes`` random bytes, in this process."""
    comp = compressor(compression)
    chunks = [os.urandom(MIB) for dummy in range(nbytes // MIB)]
    start = time.time()
    for chunk in chunks:
        comp.compress(chunk)
    comp.flush()
    return nbytes / float(MIB) / (time.time() - start)


def timed(argv):
    start = time.time()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--scale', type=float, default=float(os.environ.get('FERRY_BENCH_SCALE', '1')),
                        help='multiply every size by this (default 1; e.g. 0.1 for a quick run)')
    parser.add_argument('--base-mib', type=float, default=150, help='base (JRE) layer, MiB (default 150)')
    parser.add_argument('--component-mib', default='20,35,50,65,80,45',
                        help='one component image per size, MiB, comma-separated (default 20,35,50,65,80,45)')
    parser.add_argument('--change-mib', type=float, default=30, help='new top layer of the changed component (default 30)')
    parser.add_argument('--rounds', type=int, default=3, help='verify / sha256sum rounds; the best is reported (default 3)')
    parser.add_argument('--compression', choices=('zstd', 'gzip', 'none'),
                        help="the spec's images_compression (default: none set, so the default users get: zstd)")
    parser.add_argument('--workdir', help='parent of the temporary work directory (default: $TMPDIR)')
    parser.add_argument('--keep', action='store_true', help='keep the work directory and docker images')
    opts = parser.parse_args()
    components, size = scaled_sizes(parser, opts)

    run(['docker', 'info', '--format', '{{.ServerVersion}}'])
    work = tempfile.mkdtemp(prefix='ferry-bench-', dir=opts.workdir)
    prefix = '%s-%d' % (bench_prefix(), os.getpid())
    docker = Docker(prefix)
    try:
        return bench(opts, components, size, work, prefix, docker)
    finally:
        if opts.keep:
            log('kept %s and images %s' % (work, ' '.join(docker.images)))
        else:
            docker.cleanup()
            shutil.rmtree(work, ignore_errors=True)


def bench(opts, components, size, work, prefix, docker):
    os.makedirs(os.path.join(work, 'saves'))
    t0 = time.time()
    # --- base image: one random "JRE" layer, written once
    base_bin = random_file(os.path.join(work, 'jre-modules.bin'), size(opts.base_mib))
    rootfs = os.path.join(work, 'base-rootfs.tar')
    with tarfile.open(rootfs, 'w') as tar:
        for d in ('opt', 'opt/java', 'opt/java/lib', 'tmp'):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(base_bin, arcname='opt/java/lib/modules')
    os.unlink(base_bin)
    base_tag = '%s/base:1.0' % prefix
    log('docker import base (%s)' % mib(os.path.getsize(rootfs)))
    docker.import_base(rootfs, base_tag)
    os.unlink(rootfs)

    # --- components: one layer each on the base, each saved to its own tar
    images_v1, saves = [], {}
    for i, comp_mib in enumerate(components):
        src = os.path.join(work, 'comp%d' % i)
        os.makedirs(src)
        random_file(os.path.join(src, 'app.jar'), size(comp_mib))
        tag = '%s/comp%d:1.0' % (prefix, i)
        log('component %d: %s' % (i, mib(size(comp_mib))))
        docker.layer_on(base_tag, src, '/opt/comp%d' % i, tag)
        shutil.rmtree(src)
        archive = os.path.join(work, 'saves', 'comp%d-1.0.tar' % i)
        saves[archive] = docker.save(tag, archive)
        images_v1.append(('registry.bench.local/shop/comp%d:1.0' % i, archive))
    prep = time.time() - t0

    key, signers = signing_key(work, 'bench@ferry')
    common = ['-e', 'bundle_wheels=false', '-e', 'bundle_signing_key=' + key, '-e', 'bundle_signing_identity=bench@ferry']

    # --- 1. bundle v1 vs the docker save tars
    spec1 = write_spec(os.path.join(work, 'spec-1.0.yml'), '1.0', images_v1, opts.compression)
    v1 = os.path.join(work, 'out', 'bench-1.0')
    os.makedirs(os.path.dirname(v1))
    log('bundle.yml v1')
    build1 = playbook(['playbooks/bundle.yml', '-e', 'bundle_spec=' + spec1, '-e', 'bundle_dest=' + v1] + common)
    bundle_bytes = tree_bytes(v1)
    images_bytes = tree_bytes(os.path.join(v1, 'images'))
    save_bytes = sum(saves.values())
    raw_layers = {}
    for archive in saves:
        raw_layers.update(save_layers(archive))
    raw_layer_bytes = sum(raw_layers.values())

    # --- 2. change one component: a new top layer, build v2 with bundle_base=v1
    changed = min(2, len(components) - 1)
    src = os.path.join(work, 'change')
    os.makedirs(src)
    random_file(os.path.join(src, 'app-2.0.jar'), size(opts.change_mib))
    tag2 = '%s/comp%d:2.0' % (prefix, changed)
    docker.layer_on('%s/comp%d:1.0' % (prefix, changed), src, '/opt/comp%d-2.0' % changed, tag2)
    shutil.rmtree(src)
    archive2 = os.path.join(work, 'saves', 'comp%d-2.0.tar' % changed)
    docker.save(tag2, archive2)
    layers_old = save_layers(images_v1[changed][1])
    layers_new = save_layers(archive2)
    changed_layer_bytes = sum(n for diff_id, n in layers_new.items() if diff_id not in layers_old)
    images_v2 = list(images_v1)
    images_v2[changed] = ('registry.bench.local/shop/comp%d:2.0' % changed, archive2)
    spec2 = write_spec(os.path.join(work, 'spec-2.0.yml'), '2.0', images_v2, opts.compression)
    v2 = os.path.join(work, 'out', 'bench-2.0')
    log('bundle.yml v2 with bundle_base=v1')
    build2 = playbook(['playbooks/bundle.yml', '-e', 'bundle_spec=' + spec2, '-e', 'bundle_dest=' + v2,
                       '-e', 'bundle_base=' + v1] + common)
    delta = v2 + '-delta'
    delta_bytes = tree_bytes(delta)
    with open(os.path.join(delta, 'manifest.json')) as f:
        delta_manifest = json.load(f)
    present = delta_manifest['delta']['present']
    blob_bytes = sum(delta_manifest['files'][rel]['size'] for rel in present if rel.startswith('images/blobs/'))
    other = sorted(rel for rel in present if not rel.startswith('images/blobs/'))

    # --- 3. verify throughput vs sha256sum over the same files (page cache warmed first)
    with open(os.path.join(v1, 'manifest.json')) as f:
        files = sorted(json.load(f)['files'])
    paths = [os.path.join(v1, rel) for rel in files]
    hashed = sum(os.path.getsize(p) for p in paths)
    subprocess.run(['cat'] + paths, stdout=subprocess.DEVNULL, check=True)
    best_mod, best_wall, best_sum, best_ssl = None, None, None, None
    openssl = shutil.which('openssl')
    for _round in range(max(1, opts.rounds)):
        result, wall = verify_module(v1, signers, work)
        assert result['bytes_checked'] == hashed, (result['bytes_checked'], hashed)
        if best_mod is None or result['seconds'] < best_mod:
            best_mod = result['seconds']
        best_wall = wall if best_wall is None else min(best_wall, wall)
        took = timed(['sha256sum', '--'] + paths)
        best_sum = took if best_sum is None else min(best_sum, took)
        if openssl:
            took = timed([openssl, 'dgst', '-sha256'] + paths)
            best_ssl = took if best_ssl is None else min(best_ssl, took)
    mod_mbs = hashed / float(MIB) / best_mod
    wall_mbs = hashed / float(MIB) / best_wall
    sum_mbs = hashed / float(MIB) / best_sum

    print('%d images: base layer %s shared by all, component layers %s; changed: comp%d + %s layer' % (
        len(components), mib(size(opts.base_mib)), ', '.join(mib(size(c)) for c in components), changed,
        mib(size(opts.change_mib))))
    rows = [
        ('1. bundle size', mib(bundle_bytes), 'sum of %d docker save tars: %s' % (len(saves), mib(save_bytes)),
         '%.3f' % ratio(bundle_bytes, save_bytes)),
        ('   of which images/', mib(images_bytes), '', '%.3f' % ratio(images_bytes, save_bytes)),
        ('2. delta size', mib(delta_bytes), 'changed layer of comp%d: %s' % (changed, mib(changed_layer_bytes)),
         '%.3f' % ratio(delta_bytes, changed_layer_bytes)),
        ('   of which blobs', mib(blob_bytes), '%d files shipped' % len(present),
         '%.3f' % ratio(blob_bytes, changed_layer_bytes)),
        ('3. bundle_verify', '%.0f MiB/s (hashing)' % mod_mbs, 'sha256sum: %.0f MiB/s' % sum_mbs,
         '%.2f' % ratio(mod_mbs, sum_mbs)),
        ('   incl. start-up', '%.0f MiB/s (wall)' % wall_mbs, 'over %d files, %s' % (len(paths), mib(hashed)),
         '%.2f' % ratio(wall_mbs, sum_mbs)),
    ]
    if best_ssl:
        ssl_mbs = hashed / float(MIB) / best_ssl
        rows.append(('   vs openssl', '%.0f MiB/s (hashing)' % mod_mbs, 'openssl dgst -sha256: %.0f MiB/s' % ssl_mbs,
                     '%.2f' % ratio(mod_mbs, ssl_mbs)))
    rows += [
        ('build times', 'v1 %.1f s, v2+delta %.1f s' % (build1, build2), 'docker prep %.1f s' % prep, ''),
    ]
    widths = [max(len(r[i]) for r in rows + [('what', 'ferry', 'compared with', 'ratio')]) for i in range(4)]
    line = '  '.join('%%-%ds' % w for w in widths)
    print(line % ('what', 'ferry', 'compared with', 'ratio'))
    print('  '.join('-' * w for w in widths))
    for row in rows:
        print(line % row)
    print('delta files other than image blobs: %s' % (', '.join(other) or '-'))
    compression = opts.compression or 'zstd'
    print('layers stored %s (%s): images/ %s vs the unique layers as tars %s (%.4fx)' % (
        compression, "the spec's default" if opts.compression is None else 'images_compression', mib(images_bytes),
        mib(raw_layer_bytes), ratio(images_bytes, raw_layer_bytes)))
    if compression != 'none':
        speed = compress_speed(compression)
        print('  random bytes do not compress: %s spent about %.1f s of build v1 on them for nothing (%.0f MiB/s measured '
              'here over random bytes, %s of layers); --compression none skips it' % (
                  compression, raw_layer_bytes / float(MIB) / speed, speed, mib(raw_layer_bytes)))
    print('what this bench cannot show: layer compression (its layers are random, incompressible bytes); '
          'bench/compression.py measures the store and a one-component delta on real content')
    print('(scale %g; verify/sha256sum: best of %d rounds, page cache warm, single stream each)' % (
        opts.scale, max(1, opts.rounds)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
