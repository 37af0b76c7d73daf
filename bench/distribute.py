# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/distribute: the distribute role pulling ~200 MiB per host to 1 host, then to 4 hosts at once.

Starts systemd test hosts (ferry-testhost:bookworm-amd64; one deploy node + 4 targets, docker
connection), builds a bundle of random (incompressible) bytes on this machine - x86_64 containerd,
runc and cni-plugins artifacts and one two-layer image, ``--mib`` MiB in all - copies it onto the
deploy node and runs the role ``ferry.airgap.distribute`` three times: to one host, to four hosts
(fresh mirrors both times), and to the same four hosts again (everything present). Prints the
duration of the pull task (the first host starting to the last one done), the whole play's wall
time, the bytes each host read from the network, and the 4-host/1-host ratio.

Run from the checkout:  .venv/bin/python bench/distribute.py [--mib 200] [--hosts 4] [--keep]
Needs a running Docker engine and the test host image (tests/images/build.sh). Nothing is asserted.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile

from _bench import MIB, bench_prefix, log, must, random_file, run, start_testhost, wait_booted  # noqa: E402

from ferry_run import run_playbook  # noqa: E402

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.build import build_manifest  # noqa: E402
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import write_manifest  # noqa: E402
from ansible_collections.ferry.airgap.plugins.module_utils._digest import canonical_json  # noqa: E402
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST  # noqa: E402
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore  # noqa: E402

PREFIX = bench_prefix() + '-dist'
BUNDLE_DIR = '/opt/ferry/bench-bundle'
PULL_TASK = "Pull this host's files into"


def build_bundle(root, mib):
    """x86_64 artifacts (45/10/20 %) and one image of two layers (25 %) of random bytes; returns total bytes."""
    total = mib * MIB
    sizes = {'containerd/containerd-1.6.20-linux-amd64.tar.gz': 45, 'runc/runc.amd64': 10,
             'cni-plugins/cni-plugins-linux-amd64-v1.1.1.tgz': 20}
    for rel, pct in sizes.items():
        random_file(os.path.join(root, 'artifacts', 'x86_64', rel), total * pct // 100)
    store = ImageStore(os.path.join(root, 'images'))
    store.init()
    layers = []
    for pct in (15, 10):
        data = os.urandom(total * pct // 100)
        digest, size = store.put_bytes(data)
        layers.append({'mediaType': MT_OCI_LAYER, 'digest': digest, 'size': size})
    config = canonical_json({'architecture': 'amd64', 'os': 'linux', 'rootfs': {
        'type': 'layers', 'diff_ids': [layer['digest'] for layer in layers]}})
    cdigest, csize = store.put_bytes(config)
    manifest = canonical_json({'schemaVersion': 2, 'mediaType': MT_OCI_MANIFEST, 'layers': layers,
                               'config': {'mediaType': MT_OCI_CONFIG, 'digest': cdigest, 'size': csize}})
    mdigest, msize = store.put_bytes(manifest)
    store.set_ref('bench/app:1.0', [{'mediaType': MT_OCI_MANIFEST, 'digest': mdigest, 'size': msize,
                                     'platform': {'os': 'linux', 'architecture': 'amd64'}}])
    manifest = build_manifest(root, {'name': 'bench', 'version': '1.0', 'arches': ['x86_64']})
    write_manifest(root, manifest)
    return sum(entry['size'] for entry in manifest['files'].values())


def write_files(work, deploy, targets):
    inventory = {'all': {'vars': {'ansible_connection': 'community.docker.docker'}, 'children': {
        'deploy': {'hosts': {deploy: {}}},
        'k3s_agent': {'hosts': dict((t, {}) for t in targets)}}}}
    with open(os.path.join(work, 'hosts.yml'), 'w') as fh:
        json.dump(inventory, fh)
    with open(os.path.join(work, 'play.yml'), 'w') as fh:
        fh.write('- name: Distribute\n  hosts: k3s_agent\n  gather_facts: false\n  any_errors_fatal: true\n'
                 '  roles:\n    - role: ferry.airgap.distribute\n      vars:\n'
                 '        distribute_bundle_dir: %s\n' % BUNDLE_DIR)


def play(work, limit):
    done = must(run_playbook(os.path.join(work, 'play.yml'), os.path.join(work, 'hosts.yml'), limit=limit,
                             env={'ANSIBLE_FORKS': '20'}, timeout=None), 'ansible-playbook')
    pull, moved = None, {}
    for task in done.tasks(play=0):
        if PULL_TASK in task['task']['name']:
            if not all(result.get('skipped') for result in task['hosts'].values()):
                pull = done.task_seconds(task)
            for host, result in task['hosts'].items():
                moved[host] = result.get('bytes_transferred', 0) if not result.get('skipped') else 0
    return {'wall': done.wall, 'pull': pull, 'moved': moved}


def clean_mirrors(hosts):
    for host in hosts:
        run(['docker', 'exec', host, 'rm', '-rf', '/var/lib/ferry'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--mib', type=int, default=200, help='bundle size per host in MiB (default 200)')
    parser.add_argument('--hosts', type=int, default=4, help='targets of the parallel run (default 4)')
    parser.add_argument('--keep', action='store_true', help='keep the containers')
    args = parser.parse_args()
    deploy = PREFIX + '-deploy'
    targets = ['%s-%d' % (PREFIX, i) for i in range(1, args.hosts + 1)]
    work = tempfile.mkdtemp(prefix='ferry-bench-dist-')
    try:
        log('building a %d MiB bundle in %s' % (args.mib, work))
        total = build_bundle(os.path.join(work, 'bundle'), args.mib)
        log('starting %s and %d targets' % (deploy, len(targets)))
        for name in [deploy] + targets:
            start_testhost(name)
        for name in [deploy] + targets:
            wait_booted(name)
        run(['docker', 'exec', deploy, 'mkdir', '-p', os.path.dirname(BUNDLE_DIR)])
        run(['docker', 'cp', os.path.join(work, 'bundle'), '%s:%s' % (deploy, BUNDLE_DIR)])
        write_files(work, deploy, targets)

        log('1 host')
        one = play(work, [targets[0]])
        clean_mirrors(targets)
        log('%d hosts' % len(targets))
        many = play(work, targets)
        log('%d hosts again (everything present)' % len(targets))
        again = play(work, targets)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            for name in [deploy] + targets:
                subprocess.run(['docker', 'rm', '-f', name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    mib = total / float(MIB)
    print('bundle: %.1f MiB (%d bytes) for each x86_64 host' % (mib, total))
    print('%-28s %10s %10s %14s %12s' % ('run', 'pull s', 'play s', 'bytes moved', 'MiB/s'))
    for label, res in (('1 host', one), ('%d hosts' % len(targets), many), ('%d hosts, rerun' % len(targets), again)):
        moved = sum(res['moved'].values())
        pull = res['pull']
        rate = '%.1f' % (moved / float(MIB) / pull) if pull and moved else '-'
        print('%-28s %10s %10.1f %14d %12s' % (label, '%.2f' % pull if pull is not None else 'no pull', res['wall'],
                                               moved, rate))
    if one['pull'] and many['pull']:
        print('ratio %d hosts / 1 host, pull time: %.2f (%.2f would be serial; 1.00 perfectly parallel)' % (
            len(targets), many['pull'] / one['pull'], float(len(targets))))
        print('ratio %d hosts / 1 host, play time: %.2f' % (len(targets), many['wall'] / one['wall']))


if __name__ == '__main__':
    main()
