# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the test bundle `ferry-test` from REAL Debian artifacts, cached.

    .venv/bin/python tests/support/testbundle.py [--version 1.0.0] [--spec-only] [--force]

Prints the bundle directory (last line of stdout); progress goes to stderr.

What goes in (x86_64 and aarch64 each; Debian bookworm packages, `apt-get download`):
  artifacts/<arch>/containerd/containerd-<ver>-linux-<goarch>.tar.gz   bin/* of Debian's `containerd`
  artifacts/<arch>/runc/runc.<goarch>                                    Debian's `runc`
  artifacts/<arch>/cni-plugins/cni-plugins-linux-<goarch>-v<ver>.tgz    ./* of `containernetworking-plugins`
  images (multi-platform linux/amd64 + linux/arm64, from `busybox-static`):
    ferry.test/busybox:1.35   one layer: /bin/busybox, applet links, /etc/passwd, /etc/group
    ferry.test/pause:1.0      the busybox layer; Cmd: sh sleeping until SIGTERM (the sandbox image)
    ferry.test/web:<M.m>      the busybox layer (shared) + /www/index.html "ferry web <M.m>";
                              Cmd httpd -f -p 8080 -h /www. <M.m> is major.minor of --version.
                              Its own layer is a plain tar in the oci-archive: the build stores it
                              zstd-compressed (the spec's default), the busybox layer stays gzip.
  every artifact records its Debian package's upstream version (spec `version`).

Versions: bundle release 1.0.x carries the OLDER of the two containerd builds Debian offers
(bookworm-security 1.6.20~ds1-1+deb12u2 when this was written), any later release the NEWEST
(bookworm 1.6.20~ds1-1+deb12u3): two real builds with different sha256, so an upgrade test
replaces real binaries. The other packages are the newest Debian has. Chosen versions are pinned
in <cache>/versions.json on first use (delete it to re-resolve).

Everything is deterministic (sorted tar members, owner root, fixed mtimes, gzip mtime 0), so the
artifacts, image digests and the spec are byte-identical across runs. Paths:
  tests/output/cache/debs/                 the .deb files (apt-get download)
  tests/output/cache/root/<deb>/           dpkg -x of each .deb
  tests/output/cache/artifacts/<deb>/      the repacked upstream-layout files
  tests/output/cache/images/<M.m>/         the oci-archive tars
  tests/output/testbundle/specs/ferry-test-<version>.yml   the spec (paths relative to it)
  tests/output/testbundle/keys/ferry-test  ed25519 signing key (+ .pub, allowed_signers)
  tests/output/testbundle/<version>/       the bundle (playbooks/bundle.yml, bundle_wheels=false)
The bundle is rebuilt only when the spec's sha256 (with the signing key's) differs from the one
recorded after the last successful build (<version>.spec.sha256), or with --force. The kit
(collection tarball) inside is NOT tracked: use --force after changing the collection if a test
looks at the kit.

Images, tars and gzip come from the unit tests' image builder (tests/unit/plugins/test_support/images.py).

k3s mode (`--k3s v1.22.5+k3s1`): a bundle `ferry-k3s` for x86_64 only, from the k3s test artifacts
beside the test bed's notes ($FERRY_K3S_ARTIFACTS, default /work/shared/artifacts/k3s; see its README:
k3s built from upstream source, not the release binaries):
  artifacts/x86_64/k3s/k3s      the k3s binary of that version (spec `version`: 1.22.5+k3s1)
  images (docker-archives, images_compression: gzip, as k3s v1.21's containerd 1.4 cannot read zstd):
    docker.io/rancher/mirrored-pause:3.1       the sandbox image (pause.c)
    docker.io/library/busybox:local-debian     Debian's busybox-static (few applet links)
Paths: tests/output/testbundle/specs/ferry-k3s-<version>-<k3s>.yml and tests/output/testbundle/k3s-<k3s>/
(the same key and the same cache rule as the default mode). Needs no Debian package.
`--k3s-declare 1.23.0+k3s1` (with --k3s): the same binary, but the bundle DECLARES that k3s version (spec
`version`), for tests of the upgrade's version policy (a skipped minor is refused before any host changes,
so the binary never runs); in tests/output/testbundle/k3s-<k3s>-declared-<declared>/.
"""
import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

import yaml

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(TOP, '.collections'))
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support import images as builder, keys  # noqa: E402
ARCHES = {'x86_64': 'amd64', 'aarch64': 'arm64'}
PACKAGES = ('containerd', 'runc', 'containernetworking-plugins', 'busybox-static')
IMAGE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z: mtime of every image file, config "created"
IMAGE_CREATED = '2024-01-01T00:00:00Z'
APPLETS = ('sh', 'ash', 'cat', 'echo', 'env', 'grep', 'head', 'hostname', 'httpd', 'id', 'kill', 'ls',
           'mkdir', 'ps', 'pwd', 'rm', 'sed', 'sleep', 'tail', 'test', 'touch', 'true', 'false', 'uname',
           'wc', 'wget', 'nc', 'ip', 'date', 'df', 'du', 'find', 'top')
PAUSE_CMD = ['sh', '-c', "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
IMAGE_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']


def log(msg):
    sys.stderr.write('testbundle: %s\n' % msg)
    sys.stderr.flush()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'wb') as fh:
        fh.write(data)
    os.rename(tmp, path)


@contextlib.contextmanager
def locked(path):
    """Serialize concurrent runs (two Molecule scenarios preparing at once)."""
    with open(path, 'a') as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------ Debian packages

def _cmp_versions(a, b):
    if a == b:
        return 0
    return -1 if subprocess.call(['dpkg', '--compare-versions', a, 'lt', b]) == 0 else 1


def apt_versions(pkg, arch):
    """Versions apt knows for pkg:arch, newest first."""
    out = subprocess.check_output(['apt-cache', 'madison', '%s:%s' % (pkg, arch)], universal_newlines=True)
    found = set()
    for line in out.splitlines():
        parts = [p.strip() for p in line.split('|')]
        if len(parts) >= 3 and parts[0].split(':')[0] == pkg:
            found.add(parts[1])
    return sorted(found, key=functools.cmp_to_key(_cmp_versions), reverse=True)


def resolve_versions(cache):
    """{pkg: {'old': ver, 'new': ver}}, pinned in <cache>/versions.json after the first resolution."""
    pin = os.path.join(cache, 'versions.json')
    if os.path.exists(pin):
        with open(pin) as fh:
            return json.load(fh)
    pins = {}
    for pkg in PACKAGES:
        common = None
        for goarch in ARCHES.values():
            vers = apt_versions(pkg, goarch)
            common = vers if common is None else [v for v in common if v in vers]
        if not common:
            raise SystemExit('testbundle: apt knows no version of %s for both amd64 and arm64 '
                             '(dpkg --add-architecture arm64; apt-get update?)' % pkg)
        pins[pkg] = {'new': common[0], 'old': common[1] if len(common) > 1 else common[0]}
    write_atomic(pin, (json.dumps(pins, indent=2, sort_keys=True) + '\n').encode())
    log('pinned package versions in %s: %s' % (pin, json.dumps(pins, sort_keys=True)))
    return pins


def deb_file(pkg, version, goarch):
    return '%s_%s_%s.deb' % (pkg, version.replace(':', '%3a'), goarch)


def fetch_debs(debs_dir, wanted):
    """apt-get download every (pkg, version, goarch) not yet in debs_dir."""
    missing = [(p, v, a) for p, v, a in wanted if not os.path.exists(os.path.join(debs_dir, deb_file(p, v, a)))]
    if missing:
        argv = ['apt-get', 'download', '-q', '-o', 'APT::Sandbox::User=root']
        argv += ['%s:%s=%s' % (p, a, v) for p, v, a in missing]
        log('downloading %d packages: %s' % (len(missing), ' '.join(argv[5:])))
        subprocess.check_call(argv, cwd=debs_dir, stdout=sys.stderr)
    for p, v, a in wanted:
        if not os.path.exists(os.path.join(debs_dir, deb_file(p, v, a))):
            raise SystemExit('testbundle: apt-get download did not produce %s' % deb_file(p, v, a))


def extract_deb(cache, pkg, version, goarch):
    """dpkg -x into <cache>/root/<deb name>/ once; returns that directory."""
    name = deb_file(pkg, version, goarch)[:-4]
    root = os.path.join(cache, 'root', name)
    if not os.path.isdir(root):
        tmp = root + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        subprocess.check_call(['dpkg', '-x', os.path.join(cache, 'debs', name + '.deb'), tmp])
        os.rename(tmp, root)
    return root


def upstream_version(deb_version):
    """1:1.35.0-4+deb12u1 -> 1.35.0; 1.6.20~ds1-1+deb12u3 -> 1.6.20."""
    return re.split(r'[~+-]', deb_version.split(':', 1)[-1], 1)[0]


# ------------------------------------------------------------------ deterministic tars

def tar_bytes(entries):
    """A GNU tar (owner root) of entries: dicts {name, type, mode, mtime, data or linkname}, in the given order."""
    return builder.tar_bytes(entries, tar_format=tarfile.GNU_FORMAT, owner='root')


def _read(path):
    with open(path, 'rb') as fh:
        return fh.read()


def files_tar_gz(out, prefix, src_dir, dir_entry=None):
    """Tar.gz of the regular files of src_dir (sorted) as <prefix><name>, mode 0755, their own mtime."""
    names = sorted(n for n in os.listdir(src_dir) if os.path.isfile(os.path.join(src_dir, n))
                   and not os.path.islink(os.path.join(src_dir, n)))
    mtimes = [os.stat(os.path.join(src_dir, n)).st_mtime for n in names]
    entries = []
    if dir_entry:
        entries.append({'name': dir_entry, 'type': tarfile.DIRTYPE, 'mode': 0o755, 'mtime': max(mtimes)})
    for name, mtime in zip(names, mtimes):
        entries.append({'name': prefix + name, 'mode': 0o755, 'mtime': mtime, 'data': _read(os.path.join(src_dir, name))})
    write_atomic(out, builder.gzip_bytes(tar_bytes(entries), level=6))
    return names


def build_artifacts(cache, versions, goarch):
    """The three upstream-layout artifacts for one arch; {artifact name: path}."""
    result = {}
    ver = versions['containerd']
    root = extract_deb(cache, 'containerd', ver, goarch)
    out_dir = os.path.join(cache, 'artifacts', deb_file('containerd', ver, goarch)[:-4])
    out = os.path.join(out_dir, 'containerd-%s-linux-%s.tar.gz' % (upstream_version(ver), goarch))
    if not os.path.exists(out):
        os.makedirs(out_dir, exist_ok=True)
        names = files_tar_gz(out, 'bin/', os.path.join(root, 'usr', 'bin'), dir_entry='bin/')
        log('built %s (bin/%s)' % (out, ', bin/'.join(names)))
    result['containerd'] = out

    ver = versions['runc']
    root = extract_deb(cache, 'runc', ver, goarch)
    out_dir = os.path.join(cache, 'artifacts', deb_file('runc', ver, goarch)[:-4])
    out = os.path.join(out_dir, 'runc.%s' % goarch)
    if not os.path.exists(out):
        os.makedirs(out_dir, exist_ok=True)
        shutil.copyfile(os.path.join(root, 'usr', 'sbin', 'runc'), out + '.tmp')
        os.chmod(out + '.tmp', 0o755)
        os.rename(out + '.tmp', out)
        log('built %s' % out)
    result['runc'] = out

    ver = versions['containernetworking-plugins']
    root = extract_deb(cache, 'containernetworking-plugins', ver, goarch)
    out_dir = os.path.join(cache, 'artifacts', deb_file('containernetworking-plugins', ver, goarch)[:-4])
    out = os.path.join(out_dir, 'cni-plugins-linux-%s-v%s.tgz' % (goarch, upstream_version(ver)))
    if not os.path.exists(out):
        os.makedirs(out_dir, exist_ok=True)
        names = files_tar_gz(out, './', os.path.join(root, 'usr', 'lib', 'cni'), dir_entry='./')
        log('built %s (%s)' % (out, ' '.join(names)))
    result['cni-plugins'] = out
    return result


# ------------------------------------------------------------------ OCI images

def _entry(name, kind, mode, payload):
    entry = {'name': name, 'type': kind, 'mode': mode, 'mtime': IMAGE_EPOCH}
    entry['linkname' if kind == tarfile.SYMTYPE else 'data'] = payload if payload is not None else b''
    return entry


def busybox_layer(busybox):
    files = [('bin/', tarfile.DIRTYPE, 0o755, None), ('bin/busybox', tarfile.REGTYPE, 0o755, busybox),
             ('etc/', tarfile.DIRTYPE, 0o755, None),
             ('etc/group', tarfile.REGTYPE, 0o644, b'root:x:0:\nnogroup:x:65534:\n'),
             ('etc/passwd', tarfile.REGTYPE, 0o644,
              b'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n'),
             ('root/', tarfile.DIRTYPE, 0o700, None), ('tmp/', tarfile.DIRTYPE, 0o1777, None)]
    files += [('bin/' + applet, tarfile.SYMTYPE, 0o777, 'busybox') for applet in APPLETS]
    files.sort(key=lambda e: e[0])
    return builder.gzip_bytes(tar_bytes([_entry(*f) for f in files]), level=9)


def web_layer(text):
    """A plain tar layer (as docker save writes them): the build stores it zstd-compressed, so every
    scenario that loads ferry.test/web imports a zstd layer on top of a gzip base."""
    return tar_bytes([_entry('www/', tarfile.DIRTYPE, 0o755, None),
                      _entry('www/index.html', tarfile.REGTYPE, 0o644, text.encode())])


def image(goarch, layers, cmd, comment):
    """One platform of a test image (compact JSON, fixed creation time)."""
    return builder.Image(goarch, goarch=goarch, layers=layers, cmd=cmd, encode=builder.compact, config_extra={
        'created': IMAGE_CREATED, 'config': {'Env': IMAGE_ENV, 'WorkingDir': '/'},
        'history': [{'created': IMAGE_CREATED, 'comment': comment}]})


def oci_archive(path, ref, per_arch):
    """Write an oci-archive of one multi-platform image. per_arch: [(goarch, layers, cmd, comment)]."""
    data, index_digest = builder.oci_archive_bytes([image(*platform) for platform in per_arch], ref)
    if not (os.path.exists(path) and sha256_file(path) == hashlib.sha256(data).hexdigest()):
        write_atomic(path, data)
    return index_digest


def build_images(cache, versions, release):
    """The three oci-archives; [(ref, path)]."""
    busybox_ver = versions['busybox-static']
    out_dir = os.path.join(cache, 'images', release)
    os.makedirs(out_dir, exist_ok=True)
    base = {}
    for goarch in ARCHES.values():
        root = extract_deb(cache, 'busybox-static', busybox_ver, goarch)
        base[goarch] = busybox_layer(_read(os.path.join(root, 'bin', 'busybox')))
    web = web_layer('ferry web %s\n' % release)
    bb_tag = '.'.join(upstream_version(busybox_ver).split('.')[:2])
    images = [
        ('ferry.test/busybox:%s' % bb_tag, [(a, [base[a]], ['sh'], 'busybox-static %s' % busybox_ver) for a in base]),
        ('ferry.test/pause:1.0', [(a, [base[a]], PAUSE_CMD, 'pause: sh waiting for SIGTERM') for a in base]),
        ('ferry.test/web:%s' % release, [(a, [base[a], web], ['httpd', '-f', '-p', '8080', '-h', '/www'],
                                          'web %s' % release) for a in base]),
    ]
    result = []
    for ref, per_arch in images:
        path = os.path.join(out_dir, ref.split('/')[-1].replace(':', '-') + '.oci.tar')
        digest = oci_archive(path, ref, per_arch)
        log('image %s %s (%s)' % (ref, digest, os.path.relpath(path, TOP)))
        result.append((ref, path))
    return result


# ------------------------------------------------------------------ spec, key, bundle

def ensure_key(keys_dir):
    key = os.path.join(keys_dir, 'ferry-test')
    if not os.path.exists(key):
        os.makedirs(keys_dir, exist_ok=True)
        keys.keygen(keys_dir, 'ferry-test')
    signers = os.path.join(keys_dir, 'allowed_signers')
    line = keys.allowed_signers_line('ferry-test', key)
    if not os.path.exists(signers) or _read(signers).decode() != line:
        write_atomic(signers, line.encode())
    return key, signers


def save_spec(path, spec, origin):
    """Write ``spec`` as YAML under a "generated" header (only when its bytes differ); returns their sha256."""
    text = ('# Generated by tests/support/testbundle.py %s; do not edit.\n' % origin
            + yaml.safe_dump(spec, sort_keys=False, default_flow_style=False))
    data = text.encode()
    if not (os.path.exists(path) and _read(path) == data):
        write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


ARTIFACT_PACKAGES = {'containerd': 'containerd', 'runc': 'runc', 'cni-plugins': 'containernetworking-plugins'}


def write_spec(path, version, artifacts, images, key, versions):
    """The spec; each artifact records the upstream version of its Debian package (preflight reads it)."""
    base = os.path.dirname(path)
    rel = functools.partial(os.path.relpath, start=base)
    spec = {
        'name': 'ferry-test',
        'version': version,
        'arches': list(ARCHES),
        'artifacts': [{'name': name, 'arch': arch, 'src': rel(src), 'sha256': sha256_file(src),
                       'version': upstream_version(versions[ARTIFACT_PACKAGES[name]])}
                      for arch in ARCHES for name, src in sorted(artifacts[arch].items())],
        'images': [{'ref': ref, 'oci_archive': rel(src)} for ref, src in images],
        'signing': {'key': rel(key), 'identity': 'ferry-test', 'namespace': 'ferry-bundle'},
    }
    return save_spec(path, spec, 'from real Debian packages')


def _code_sha():
    """sha256 over the files that go into a bundle's kit: plugins/, roles/, playbooks/, galaxy.yml."""
    digest = hashlib.sha256()
    for top in ('plugins', 'roles', 'playbooks', 'galaxy.yml'):
        for root, dirs, names in sorted(os.walk(os.path.join(TOP, top))) if os.path.isdir(os.path.join(TOP, top)) \
                else [(TOP, [], [top])]:
            if '__pycache__' in root.split(os.sep):
                continue
            for name in sorted(names):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, TOP).encode() + b'\0' + _read(path) + b'\0')
    return digest.hexdigest()


def build_bundle(spec, dest, key, stamp, spec_sha, force):
    if not force and os.path.exists(os.path.join(dest, 'manifest.json')) and os.path.exists(stamp) \
            and _read(stamp).decode().strip() == spec_sha:
        log('bundle %s is up to date (spec sha256 %s)' % (os.path.relpath(dest, TOP), spec_sha[:12]))
        return
    if os.path.exists(stamp):
        os.unlink(stamp)
    venv_bin = os.path.join(TOP, '.venv', 'bin')
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(IMAGE_EPOCH), ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, '.collections'),
               PATH=venv_bin + os.pathsep + os.environ.get('PATH', ''))
    argv = [os.path.join(venv_bin, 'ansible-playbook'), 'playbooks/bundle.yml', '-e', 'bundle_spec=' + spec,
            '-e', 'bundle_dest=' + dest, '-e', 'bundle_signing_key=' + key, '-e', 'bundle_wheels=false']
    log('running: %s' % ' '.join(argv))
    start = time.time()
    proc = subprocess.run(argv, cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:])
        raise SystemExit('testbundle: bundle.yml failed (rc %d)' % proc.returncode)
    write_atomic(stamp, (spec_sha + '\n').encode())
    log('bundle.yml took %.0f s' % (time.time() - start))


K3S_IMAGES = (('docker.io/rancher/mirrored-pause:3.1', 'pause-3.1-local.tar'),
              ('docker.io/library/busybox:local-debian', 'busybox-local.tar'))


def k3s_artifacts_dir():
    return os.environ.get('FERRY_K3S_ARTIFACTS', '/work/shared/artifacts/k3s')


def _sha256sum_entry(path, name):
    """The sha256 listed for ``name`` in a sha256sum file (upstream's sha256sum-<arch>.txt format)."""
    for line in _read(path).decode().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip('*') == name:
            return fields[0]
    raise SystemExit('testbundle: %s lists no %s' % (path, name))


def write_k3s_spec(path, version, k3s_version, key, declared=None):
    """The spec of a k3s bundle: the k3s binary (x86_64) and the two local docker-archives, gzip layers.
    ``declared``: the k3s version the spec records for the binary (default: the binary's own)."""
    base = os.path.dirname(path)
    rel = functools.partial(os.path.relpath, start=base)
    top = k3s_artifacts_dir()
    binary = os.path.join(top, k3s_version, 'k3s')
    if not os.path.exists(binary):
        raise SystemExit('testbundle: no k3s %s at %s (set FERRY_K3S_ARTIFACTS)' % (k3s_version, binary))
    expected = _sha256sum_entry(os.path.join(top, k3s_version, 'sha256sum.txt'), 'k3s')
    if sha256_file(binary) != expected:
        raise SystemExit('testbundle: %s does not match its sha256sum.txt' % binary)
    images = []
    for ref, name in K3S_IMAGES:
        tar = os.path.join(top, 'images', name)
        if sha256_file(tar) != _sha256sum_entry(os.path.join(top, 'images', 'sha256sum.txt'), name):
            raise SystemExit('testbundle: %s does not match its sha256sum.txt' % tar)
        images.append({'ref': ref, 'docker_archive': rel(tar)})
    spec = {
        'name': 'ferry-k3s',
        'version': version,
        'arches': ['x86_64'],
        'artifacts': [{'name': 'k3s', 'arch': 'x86_64', 'src': rel(binary), 'sha256': expected,
                       'version': declared or k3s_version.lstrip('v')}],
        'images': images,
        'images_compression': 'gzip',
        'signing': {'key': rel(key), 'identity': 'ferry-test', 'namespace': 'ferry-bundle'},
    }
    return save_spec(path, spec, '--k3s from the k3s test artifacts')


def main_k3s(args, out):
    """--k3s VERSION: the k3s bundle; prints its directory."""
    start = time.time()
    key, signers = ensure_key(os.path.join(out, 'keys'))
    suffix = '-declared-%s' % args.k3s_declare if args.k3s_declare else ''
    spec = os.path.join(out, 'specs', 'ferry-k3s-%s-%s%s.yml' % (args.version, args.k3s, suffix))
    spec_sha = write_k3s_spec(spec, args.version, args.k3s, key, args.k3s_declare)
    stamp_sha = hashlib.sha256((spec_sha + _read(key + '.pub').decode() + _code_sha()).encode()).hexdigest()
    log('spec %s (sha256 %s)' % (os.path.relpath(spec, TOP), spec_sha[:12]))
    if args.spec_only:
        print(spec)
        return 0
    dest = os.path.join(out, 'k3s-%s%s' % (args.k3s, suffix))
    with locked(os.path.join(out, '.lock')):
        build_bundle(spec, dest, key, dest + '.spec.sha256', stamp_sha, args.force)
    log('done in %.1f s; allowed_signers: %s' % (time.time() - start, os.path.relpath(signers, TOP)))
    print(dest)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--version', default='1.0.0', help='bundle version (default 1.0.0); 1.0.x carries the '
                        'older Debian containerd build, later versions the newest; web tag = major.minor')
    parser.add_argument('--cache', default=os.path.join(TOP, 'tests', 'output', 'cache'))
    parser.add_argument('--out', default=os.path.join(TOP, 'tests', 'output', 'testbundle'))
    parser.add_argument('--spec-only', action='store_true', help='write the spec, do not run bundle.yml')
    parser.add_argument('--force', action='store_true', help='rebuild the bundle even if the spec is unchanged')
    parser.add_argument('--k3s', metavar='K3S_VERSION', help='build the k3s bundle instead (e.g. v1.22.5+k3s1): '
                        'the k3s binary of that version and the pause and busybox docker-archives')
    parser.add_argument('--k3s-declare', metavar='VERSION', help='with --k3s: the k3s version the bundle declares for '
                        'that binary (e.g. 1.23.0+k3s1), for version-policy tests; the binary stays the one of --k3s')
    args = parser.parse_args(argv)
    if not re.match(r'^\d+\.\d+(\.\d+)?$', args.version):
        parser.error('--version must look like 1.0.0')
    if args.k3s is not None and not re.match(r'^v\d+\.\d+\.\d+\+k3s\d+$', args.k3s):
        parser.error('--k3s must look like v1.22.5+k3s1')
    if args.k3s_declare is not None and (args.k3s is None or not re.match(r'^\d+\.\d+\.\d+\+k3s\d+$', args.k3s_declare)):
        parser.error('--k3s-declare needs --k3s and must look like 1.23.0+k3s1')
    release = '.'.join(args.version.split('.')[:2])
    cache, out = os.path.abspath(args.cache), os.path.abspath(args.out)
    for sub in ('debs', 'root', 'artifacts', 'images'):
        os.makedirs(os.path.join(cache, sub), exist_ok=True)
    os.makedirs(os.path.join(out, 'specs'), exist_ok=True)
    if args.k3s:
        return main_k3s(args, out)
    start = time.time()
    with locked(os.path.join(cache, '.lock')):
        pins = resolve_versions(cache)
        which = 'old' if release == '1.0' else 'new'
        versions = dict((pkg, pins[pkg]['new']) for pkg in PACKAGES)
        versions['containerd'] = pins['containerd'][which]
        fetch_debs(os.path.join(cache, 'debs'),
                   [(pkg, versions[pkg], goarch) for pkg in PACKAGES for goarch in ARCHES.values()])
        artifacts = dict((arch, build_artifacts(cache, versions, goarch)) for arch, goarch in ARCHES.items())
        images = build_images(cache, versions, release)
        key, signers = ensure_key(os.path.join(out, 'keys'))
        spec = os.path.join(out, 'specs', 'ferry-test-%s.yml' % args.version)
        spec_sha = write_spec(spec, args.version, artifacts, images, key, versions)
        # The bundle also depends on the signing key: a regenerated key means a rebuild.
        # the bundle also carries the kit (collection, bootstrap, playbooks): rebuilt when that code changes
        stamp_sha = hashlib.sha256((spec_sha + _read(key + '.pub').decode() + _code_sha()).encode()).hexdigest()
        log('spec %s (sha256 %s); debian versions: %s' % (
            os.path.relpath(spec, TOP), spec_sha[:12], ', '.join('%s %s' % i for i in sorted(versions.items()))))
        if args.spec_only:
            print(spec)
            return 0
        dest = os.path.join(out, args.version)
        with locked(os.path.join(out, '.lock')):
            build_bundle(spec, dest, key, dest + '.spec.sha256', stamp_sha, args.force)
    log('done in %.1f s; allowed_signers: %s' % (time.time() - start, os.path.relpath(signers, TOP)))
    print(dest)
    return 0


if __name__ == '__main__':
    sys.exit(main())
