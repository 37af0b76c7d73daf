# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/compression: the image store's bytes on REAL content, against the obvious alternatives, in one run.

bench/bundle.py uses random layers, which nothing can compress; this one builds layers from files
installed on this machine: a base rootfs from /usr/bin and /usr/lib/x86_64-linux-gnu (capped at
--base-mib), and one component layer per installed Debian package of --packages (their ``dpkg -L``
files, capped at --component-mib each): a "system" of images sharing the base. Each image is written
as a legacy ``docker save`` tar (layer tars with fixed owners and times), then imported with Ferry's
store import (``_oci.sync.sync_images``, what ``bundle_images`` runs) with zstd, gzip and none. Prints:

1. the store's bytes for each compression vs the sum of the ``docker save`` tars, vs those tars each
   compressed with ``zstd -3`` (the CLI: what a site would get by compressing the tars), vs the unique
   layers each compressed with ``zstd -3`` (the floor the issue sets the goal against: within 1.05x),
   vs the unique layers gzip-compressed (level 6: what registries hold);
2. the import time for each compression, a rerun with zstd (the diff_id map: nothing read), and
   ImageStore.verify() time of the zstd and the uncompressed store.

Run from the checkout:  .venv/bin/python bench/compression.py [--base-mib 150] [--component-mib 120]
  [--packages openjdk-17-jre-headless,libpython3.11-stdlib,perl-modules-5.36,git,containerd] [--keep]
Needs the zstd CLI (/usr/bin/zstd) and the ``zstandard`` package in the venv. Nothing is asserted.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

from _bench import MIB, log, mib, ratio  # noqa: E402

from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore  # noqa: E402
from ansible_collections.ferry.airgap.plugins.module_utils._oci.sync import sync_images  # noqa: E402

DEFAULT_PACKAGES = 'openjdk-17-jre-headless,libpython3.11-stdlib,perl-modules-5.36,git,containerd'


def package_files(package):
    proc = subprocess.run(['dpkg', '-L', package], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True, check=False)
    return [p for p in proc.stdout.splitlines() if p.startswith('/')] if proc.returncode == 0 else []


def tree_files(roots):
    found = []
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            dirs.sort()
            found.extend(os.path.join(dirpath, name) for name in sorted(names))
    return found


def write_layer(path, files, cap):
    """A layer tar of the regular files of ``files`` (sorted, owner 0, mtime 0) up to ``cap`` bytes of content."""
    total = 0
    with tarfile.open(path, 'w', format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(set(files)):
            if os.path.islink(name) or not os.path.isfile(name):
                continue
            size = os.path.getsize(name)
            if total + size > cap:
                continue
            try:
                handle = open(name, 'rb')
            except OSError:
                continue
            with handle:
                info = tarfile.TarInfo(name.lstrip('/'))
                info.size, info.mode, info.mtime = size, 0o755 if os.access(name, os.X_OK) else 0o644, 0
                tar.addfile(info, handle)
            total += size
    return total


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(MIB), b''):
            digest.update(chunk)
    return digest.hexdigest()


def write_docker_save(path, tag, layers):
    """A legacy ``docker save`` tar: <id>/layer.tar per layer, <config hex>.json, manifest.json."""
    diff_ids = ['sha256:' + sha256_file(layer) for layer in layers]
    config = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {'Cmd': ['/bin/sh']},
                         'rootfs': {'type': 'layers', 'diff_ids': diff_ids}}, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + '.json'
    names = []
    with tarfile.open(path, 'w', format=tarfile.PAX_FORMAT) as tar:
        for layer, diff_id in zip(layers, diff_ids):
            name = hashlib.sha256(('id' + diff_id).encode()).hexdigest() + '/layer.tar'
            tar.add(layer, arcname=name)
            names.append(name)
        for name, data in ((config_name, config),
                           ('manifest.json', json.dumps([{'Config': config_name, 'RepoTags': [tag],
                                                          'Layers': names}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def zstd_cli(path):
    """Bytes of ``zstd -3`` of ``path`` (the CLI, single-threaded, its default checksum)."""
    proc = subprocess.run(['zstd', '-3', '-q', '-c', '-T1', path], stdout=subprocess.PIPE, check=True)
    return len(proc.stdout)


def gzip_size(path, level=6):
    out = io.BytesIO()
    with open(path, 'rb') as src, gzip.GzipFile(filename='', mode='wb', fileobj=out, compresslevel=level, mtime=0) as gz:
        shutil.copyfileobj(src, gz, MIB)
    return len(out.getvalue())


def tree_bytes(root):
    return sum(os.path.getsize(os.path.join(d, n)) for d, dummy, names in os.walk(root) for n in names)


def timed(func):
    start = time.time()
    value = func()
    return value, time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--base-mib', type=float, default=150)
    parser.add_argument('--component-mib', type=float, default=120)
    parser.add_argument('--packages', default=DEFAULT_PACKAGES)
    parser.add_argument('--keep', action='store_true')
    opts = parser.parse_args()
    work = tempfile.mkdtemp(prefix='ferry-bench-compression-')
    try:
        base = os.path.join(work, 'base.tar')
        log('base layer from /usr/bin and /usr/lib/x86_64-linux-gnu')
        base_bytes = write_layer(base, tree_files(['/usr/bin', '/usr/lib/x86_64-linux-gnu']), int(opts.base_mib * MIB))
        components = []
        for package in [p.strip() for p in opts.packages.split(',') if p.strip()]:
            files = package_files(package)
            if not files:
                log('%s is not installed: left out' % package)
                continue
            path = os.path.join(work, package + '.tar')
            content = write_layer(path, files, int(opts.component_mib * MIB))
            components.append((package, path, content))
            log('%s: %s of files' % (package, mib(content)))
        specs, saves = [], []
        for package, layer, dummy in components:
            save = os.path.join(work, package + '.docker.tar')
            tag = 'bench/%s:1' % package.replace('.', '-')
            write_docker_save(save, tag, [base, layer])
            saves.append(save)
            specs.append({'ref': 'registry.ferry.local/' + tag, 'docker_archive': save})
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
            dummy, times[compression] = timed(lambda: sync_images(store, specs, ['x86_64'], compression))
            stores[compression] = tree_bytes(store.path)
        again = ImageStore(os.path.join(work, 'store-zstd'))
        rerun, rerun_time = timed(lambda: sync_images(again, specs, ['x86_64'], 'zstd'))
        verify_zstd = timed(lambda: ImageStore(os.path.join(work, 'store-zstd')).verify())
        verify_none = timed(lambda: ImageStore(os.path.join(work, 'store-none')).verify())

        print('\nbench/compression: %d images sharing a %s base layer (real files of this machine)' % (
            len(components), mib(base_bytes)))
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
        del rerun
    finally:
        if opts.keep:
            log('kept %s' % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
