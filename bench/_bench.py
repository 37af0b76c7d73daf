# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the bench scripts share: running commands, formatting figures, layers of real files (real_layers,
write_docker_save), bundles (playbook, write_spec, verify_module) and systemd test hosts with containerd
(start_testhost, Host, containerd_binaries, image_load)."""

import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'support'))  # ferry_run: running ansible-playbook, reading its JSON
sys.path.insert(0, os.path.join(ROOT, '.collections'))

MIB = 1024 * 1024
TESTHOST_IMAGE = 'ferry-testhost:bookworm-amd64'
CAPS_FILE = os.path.join(ROOT, 'tests', 'images', 'testhost-caps.txt')  # the test hosts' capabilities


def testhost_caps():
    with open(CAPS_FILE) as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith('#')]


def log(msg):
    sys.stderr.write('[bench] %s\n' % msg)
    sys.stderr.flush()


def run(argv, **kw):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False, **kw)
    if proc.returncode != 0:
        raise SystemExit('command failed (%d): %s\n%s' % (proc.returncode, ' '.join(argv), proc.stdout[-4000:]))
    return proc.stdout


def quiet(argv):
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def mib(n):
    return '%.1f MiB' % (n / float(MIB))


def ratio(a, b):
    return a / float(b) if b else float('nan')


def random_file(path, size):
    """``size`` bytes of os.urandom at ``path`` (its directory made), written in 1 MiB chunks; returns ``path``."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'wb') as fh:
        for off in range(0, size, MIB):
            fh.write(os.urandom(min(MIB, size - off)))
    return path


def scaled_sizes(parser, opts):
    """(--component-mib as a list of MiB, size(MiB) -> bytes times --scale, at least 4 KiB)."""
    components = [float(x) for x in opts.component_mib.split(',') if x.strip()]
    if not components:
        parser.error('--component-mib needs at least one size')

    def size(x):
        return max(4096, int(x * opts.scale * MIB))
    return components, size


def must(run, what):
    """A ferry_run.Run that must have succeeded."""
    if run.rc != 0:
        raise SystemExit('%s failed (rc %d):\n%s' % (what, run.rc, run.tail()))
    return run


def start_testhost(name, volumes=(), image=TESTHOST_IMAGE):
    """Start (replacing any old one) a systemd test host container the way Molecule does; ``volumes``
    are extra ``-v`` specs. ``image``: the arm64 one is labelled amd64 and runs arm64 binaries through
    binfmt qemu-user (tests/images/build.sh), so no ``--platform`` is given."""
    quiet(['docker', 'rm', '-f', name])
    argv = ['docker', 'run', '-d', '--name', name, '--hostname', name, '--cap-drop', 'ALL']
    for cap in testhost_caps():
        argv += ['--cap-add', cap]
    argv += ['--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined', '--cgroupns', 'host',
             '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw', '--tmpfs', '/run', '--tmpfs', '/run/lock']
    for volume in volumes:
        argv += ['-v', volume]
    run(argv + [image])


def wait_booted(name, seconds=90):
    for dummy in range(seconds):
        proc = subprocess.run(['docker', 'exec', name, 'systemctl', 'is-system-running'], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
        if proc.stdout.strip() in ('running', 'degraded'):
            return
        time.sleep(1)
    raise SystemExit('%s did not boot' % name)


def bench_prefix():
    """Prefix of the Docker containers, volumes and images a bench creates ($FERRY_BENCH_PREFIX, default ferry-bench)."""
    return os.environ.get('FERRY_BENCH_PREFIX', 'ferry-bench')


def tree_bytes(root):
    return sum(os.path.getsize(os.path.join(d, n)) for d, dummy, names in os.walk(root) for n in names)


def timed_call(func):
    """(func(), wall seconds)."""
    start = time.time()
    value = func()
    return value, time.time() - start


def warm(paths):
    """Read ``paths`` once so what reads them next starts with them in the page cache."""
    for path in paths:
        with open(path, 'rb') as fh:
            while fh.read(8 * MIB):
                pass


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(MIB), b''):
            digest.update(chunk)
    return digest.hexdigest()


def zstd_cli(path):
    """Bytes of ``zstd -3`` of ``path`` (the CLI, single-threaded, its default checksum)."""
    proc = subprocess.run(['zstd', '-3', '-q', '-c', '-T1', path], stdout=subprocess.PIPE, check=True)
    return len(proc.stdout)


# ---------------------------------------------------------------- real content (files of this machine)

BASE_TREES = ('/usr/bin', '/usr/lib/x86_64-linux-gnu')


def package_files(package):
    """The paths ``dpkg -L package`` lists ([] when it is not installed)."""
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


def files_layer(path, files, cap):
    """A layer tar of the regular files of ``files`` (sorted, owner 0, mtime 0) up to ``cap`` bytes of content
    (a file that would pass the cap is skipped); returns the content bytes."""
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


def real_layers(work, base_mib, component_mib, packages):
    """The base layer (work/base.tar, from BASE_TREES, capped at ``base_mib``) and one layer per installed
    package of ``packages`` (work/<package>.tar, capped at ``component_mib``; missing packages left out).

    Returns ((base path, content bytes), [(package, layer path, content bytes)]).
    """
    base = os.path.join(work, 'base.tar')
    log('base layer from %s' % ' and '.join(BASE_TREES))
    base_bytes = files_layer(base, tree_files(BASE_TREES), int(base_mib * MIB))
    components = []
    for package in packages:
        files = package_files(package)
        if not files:
            log('%s is not installed: left out' % package)
            continue
        path = os.path.join(work, package + '.tar')
        content = files_layer(path, files, int(component_mib * MIB))
        components.append((package, path, content))
        log('%s: %s of files' % (package, mib(content)))
    return (base, base_bytes), components


def write_docker_save(path, tag, layers, arch='amd64'):
    """A legacy ``docker save`` tar: <id>/layer.tar per layer, <config hex>.json, manifest.json."""
    diff_ids = ['sha256:' + sha256_file(layer) for layer in layers]
    config = json.dumps({'architecture': arch, 'os': 'linux', 'config': {'Cmd': ['/bin/sh']},
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


# ---------------------------------------------------------------- bundles (playbooks/bundle.yml, bundle_verify)

def playbook(args):
    """Run bundle.yml (plain output); returns its wall seconds."""
    from ferry_run import ansible
    return must(ansible(args, callback=None, merge=True), 'bundle.yml').wall


def write_spec(path, version, images, compression=None, arch='x86_64'):
    """A bundle spec of ``images`` [(ref, docker_archive)]; ``compression`` sets images_compression (None: the default)."""
    spec = {'name': 'bench', 'version': version, 'arches': [arch], 'artifacts': [], 'apps': [],
            'images': [{'ref': ref, 'docker_archive': archive, 'arch': arch} for ref, archive in images]}
    if compression:
        spec['images_compression'] = compression
    with open(path, 'w') as f:
        json.dump(spec, f, indent=2)  # JSON is YAML
    return path


def verify_module(bundle_dir, signers, work):
    """Run the bundle_verify module directly (as Ansible would on the host); returns its result and wall time."""
    args = os.path.join(work, 'verify-args.json')
    with open(args, 'w') as f:
        json.dump({'ANSIBLE_MODULE_ARGS': {'path': bundle_dir, 'allowed_signers': signers}}, f)
    module = os.path.join(ROOT, 'plugins', 'modules', 'bundle_verify.py')
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.collections'))
    start = time.time()
    proc = subprocess.run([sys.executable, module, args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, check=False)
    seconds = time.time() - start
    result = json.loads(proc.stdout)
    if proc.returncode != 0 or result.get('failed'):
        raise SystemExit('bundle_verify failed: %s' % result.get('msg'))
    return result, seconds


# ---------------------------------------------------------------- a test host with containerd, image_load on it

HOST_MOUNT = '/bench'  # where a host sees the bench's work directory (read-only)
HOST_NAMESPACE = 'bench'
CONTAINERD_UNIT = """[Unit]
Description=containerd for the Ferry benches
After=local-fs.target

[Service]
ExecStart=/usr/local/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=no
"""
CONTAINERD_CONFIG = """version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
"""
IMAGE_LOAD_PLAY = """- name: image_load bench
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping (first use of the connection)
      ansible.builtin.ping:
    - name: Load the images
      ferry.airgap.image_load:
        store: %(store)s
        namespace: %(namespace)s
        platform: %(platform)s
    - name: %(ping)s
      ansible.builtin.ping:
"""
LOAD_TASK = 'Load the images'
PING_TASK = 'Ping (the cost of a task over the docker connection)'
TESTHOSTS = {'amd64': TESTHOST_IMAGE, 'arm64': 'ferry-testhost:bookworm-arm64'}


def containerd_binaries(work, goarch='amd64', cache=None):
    """containerd, ctr, containerd-shim-runc-v2 and runc for ``goarch`` from testbundle.py's cache (``cache``,
    default tests/output/cache; filled with ``apt-get download`` when empty), into work/bin-<goarch>."""
    cache = cache or os.path.join(ROOT, 'tests', 'output', 'cache')
    # The newest Debian builds (the pins' 'new'): testbundle.py puts them in releases after 1.0.x.
    run([sys.executable, os.path.join(ROOT, 'tests', 'support', 'testbundle.py'), '--spec-only', '--version', '1.1.0',
         '--cache', cache, '--out', os.path.join(os.path.dirname(cache), 'testbundle')], cwd=ROOT)
    with open(os.path.join(cache, 'versions.json')) as fh:
        versions = json.load(fh)
    found = {}
    for pkg, pattern in (('containerd', 'containerd-*-linux-%s.tar.gz' % goarch), ('runc', 'runc.' + goarch)):
        hits = glob.glob(os.path.join(cache, 'artifacts', '%s_%s_%s' % (pkg, versions[pkg]['new'], goarch), pattern))
        if len(hits) != 1:
            raise SystemExit('%s %s artifact not found in %s/artifacts (%s)' % (pkg, goarch, cache, hits))
        found[pkg] = hits[0]
    bindir = os.path.join(work, 'bin-' + goarch)
    os.makedirs(bindir)
    with tarfile.open(found['containerd']) as tar:
        for name in ('containerd', 'ctr', 'containerd-shim-runc-v2'):
            with open(os.path.join(bindir, name), 'wb') as out:
                shutil.copyfileobj(tar.extractfile('bin/' + name), out)
    shutil.copy(found['runc'], os.path.join(bindir, 'runc'))
    for name in os.listdir(bindir):
        os.chmod(os.path.join(bindir, name), 0o755)
    return 'containerd %s, runc %s (Debian)' % (versions['containerd']['new'], versions['runc']['new'])


class Host(object):
    """One systemd test host (``goarch``: amd64, or arm64 under qemu) with a fresh volume on /var/lib/containerd
    and ``work`` on HOST_MOUNT (read-only); containerd from work/bin-<goarch> (containerd_binaries)."""

    def __init__(self, work, name, goarch='amd64'):
        self.name = name
        self.volume = self.name + '-containerd'
        self.work = work
        self.goarch = goarch
        self.image = TESTHOSTS[goarch]
        self.platform = 'linux/' + goarch

    def start(self):
        quiet(['docker', 'rm', '-f', self.name])
        quiet(['docker', 'volume', 'rm', self.volume])
        run(['docker', 'volume', 'create', self.volume])
        start_testhost(self.name, ['%s:/var/lib/containerd' % self.volume, '%s:%s:ro' % (self.work, HOST_MOUNT)],
                       image=self.image)

    def boot_with_containerd(self, cache=None):
        """start(), containerd's binaries for the host's arch fetched while it boots, then installed and
        running; returns their Debian versions (containerd_binaries)."""
        self.start()
        versions = containerd_binaries(self.work, self.goarch, cache)
        self.wait_booted()
        self.install_containerd()
        return versions

    def sh(self, script, *args):
        return run(['docker', 'exec', self.name, 'sh', '-c', script, 'sh'] + list(args))

    def wait_booted(self):
        wait_booted(self.name, 90 if self.goarch == 'amd64' else 600)

    def install_containerd(self):
        self.sh('set -e; install -m 0755 %(b)s/containerd %(b)s/ctr %(b)s/containerd-shim-runc-v2 /usr/local/bin/; '
                'install -m 0755 %(b)s/runc /usr/local/sbin/runc; mkdir -p /etc/containerd; '
                'printf "%%s" "$1" > /etc/systemd/system/containerd.service; printf "%%s" "$2" > /etc/containerd/config.toml; '
                'systemctl daemon-reload' % {'b': '%s/bin-%s' % (HOST_MOUNT, self.goarch)}, CONTAINERD_UNIT, CONTAINERD_CONFIG)

    def fresh_containerd(self):
        """Stop containerd, empty /var/lib/containerd, flush dirty pages, start it and wait for its socket."""
        self.sh('systemctl stop containerd; find /var/lib/containerd -mindepth 1 -maxdepth 1 -exec rm -rf {} +; sync; '
                'systemctl start containerd')
        for dummy in range(300):
            proc = subprocess.run(['docker', 'exec', self.name, 'ctr', 'version'], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, check=False)
            if proc.returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit('containerd did not start in %s:\n%s' % (self.name, self.sh('journalctl -u containerd | tail -20')))

    def images(self):
        """{ref: digest} of containerd's images in HOST_NAMESPACE."""
        out = self.sh('ctr -n %s images ls' % HOST_NAMESPACE)
        return dict((f[0], f[2]) for f in (line.split() for line in out.splitlines())
                    if len(f) >= 3 and f[2].startswith('sha256:'))

    def disk(self):
        """Bytes of containerd's content store and overlayfs snapshots."""
        out = self.sh('du -sb /var/lib/containerd/io.containerd.content.v1.content '
                      '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs')
        sizes = [int(line.split()[0]) for line in out.splitlines() if line.strip()]
        return sizes[0], sizes[1]

    def remove(self):
        quiet(['docker', 'rm', '-f', self.name])
        quiet(['docker', 'volume', 'rm', self.volume])

    def write_inventory(self, path):
        with open(path, 'w') as fh:
            json.dump({'all': {'hosts': {self.name: {}}, 'vars': {
                'ansible_connection': 'community.docker.docker', 'ansible_python_interpreter': '/usr/bin/python3'}}}, fh)
        return path

    def write_play(self, path, store):
        """A playbook: ping, image_load of ``store`` (a path inside the host), ping."""
        with open(path, 'w') as fh:
            fh.write(IMAGE_LOAD_PLAY % {'store': store, 'namespace': HOST_NAMESPACE, 'platform': self.platform,
                                        'ping': PING_TASK})
        return path


def load_twice(play, inventory, host, blob_paths):
    """On a fresh containerd with ``blob_paths`` in the page cache: image_load, the host's images and disk use,
    then the rerun. Returns (first seconds, ping seconds, wall, first result, images, disk, again seconds,
    again wall, again result); a failed or unchanged first load is fatal."""
    host.fresh_containerd()
    warm(blob_paths)
    took, ping, wall, first = image_load(play, inventory, host)
    if first.get('failed') or not first.get('changed'):
        raise SystemExit('image_load first load: %s' % json.dumps(first)[:3000])
    loaded, disk = host.images(), host.disk()
    again_took, dummy, again_wall, again = image_load(play, inventory, host)
    return took, ping, wall, first, loaded, disk, again_took, again_wall, again


def image_load(play, inventory, host):
    """Run ``play`` (Host.write_play); returns (load task seconds, ping seconds, playbook wall seconds, result)."""
    from ferry_run import run_playbook
    done = must(run_playbook(play, inventory, timeout=None), 'ansible-playbook')
    took = dict((task['task']['name'], done.task_seconds(task)) for task in done.tasks(play=0))
    return took[LOAD_TASK], took[PING_TASK], done.wall, done.task_results(LOAD_TASK)[host.name]
