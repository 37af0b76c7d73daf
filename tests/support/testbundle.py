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

k3s mode (`--k3s v1.22.5+k3s1 [--k3s-arch aarch64]`): a bundle `ferry-k3s` for x86_64 only, from the k3s test artifacts
beside the test bed's notes ($FERRY_K3S_ARTIFACTS, default /work/shared/artifacts/k3s; see its README:
k3s built from upstream source, not the release binaries):
  artifacts/x86_64/k3s/k3s      the k3s binary of that version (spec `version`: 1.22.5+k3s1)
  images (docker-archives, images_compression: gzip, as k3s v1.21's containerd 1.4 cannot read zstd):
    docker.io/rancher/mirrored-pause:3.1       the sandbox image (pause.c)
    docker.io/library/busybox:local-debian     Debian's busybox-static (few applet links)
Paths: tests/output/testbundle/specs/ferry-k3s-<version>-<k3s>.yml and tests/output/testbundle/k3s-<k3s>/
(the same key and the same cache rule as the default mode). Needs no Debian package.
`--k3s-arch aarch64` (test-bed build only) declares that amd64 binary for aarch64 (arches x86_64 + aarch64): a
spec whose build fails at the artifact (wrong-arch ELF); its paths end in `-as-aarch64`.
`--k3s-declare 1.23.0+k3s1` (test-bed build): the same binary, but the bundle DECLARES that k3s version (spec
`version`), for tests of the upgrade's version policy (a skipped minor is refused before any host changes,
so the binary never runs); its paths end in `-declared-<version>`.

The same --k3s also takes upstream RELEASE artifacts, when $FERRY_K3S_ARTIFACTS/<version>/ holds them as
github.com/k3s-io/k3s/releases has them (k3s_layout() decides which kind a version directory holds):
  <version>/k3s, sha256sum-amd64.txt, k3s-airgap-images-amd64.tar (or .tar.gz)     x86_64
  <version>/k3s-arm64, sha256sum-arm64.txt, k3s-airgap-images-arm64.tar (or .tar.gz) aarch64, when k3s-arm64 is there
The bundle `ferry-k3s-release`: artifact k3s per arch (k3s-arm64 stored as k3s), its sha256 from the
sum file, version from the directory name; every RepoTag of each airgap archive (fully qualified) as an
image declared per arch, images_compression zstd. Upstream's .tar.zst cannot be read (Ferry reads plain
and gzip tars only). `--k3s-layout` prints `release <version>` (FERRY_K3S_RELEASE_VERSION, or the one
release directory under $FERRY_K3S_ARTIFACTS), `test-bed` or `none`, and exits (tests/run.sh asks it
whether the k3s_release scenario can run).
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
from ansible_collections.ferry.airgap.plugins.module_utils._safetar import (  # noqa: E402
    iter_members, member_name, member_reader, open_tar)
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


# ------------------------------------------------------------------ k3s: test-bed build or upstream release

K3S_VERSION_RE = re.compile(r'^v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+$')
# Upstream's release files per Ferry arch: (goarch, binary name).
K3S_RELEASE_FILES = (('x86_64', 'amd64', 'k3s'), ('aarch64', 'arm64', 'k3s-arm64'))
# Limits for reading an airgap archive's manifest.json (the archive is input from outside: no extraction).
AIRGAP_MAX_MANIFEST = 1 << 20
AIRGAP_MAX_MEMBERS = 100000
AIRGAP_MAX_TAGS = 1000
_TAG_RE = re.compile(r'^[a-z0-9][a-z0-9._/:-]{0,254}:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$')


def _airgap_archive(version_dir, goarch):
    """The airgap images archive of goarch in version_dir (.tar preferred, then .tar.gz), or None."""
    base = os.path.join(version_dir, 'k3s-airgap-images-%s' % goarch)
    for suffix in ('.tar', '.tar.gz'):
        if os.path.isfile(base + suffix):
            return base + suffix
    if os.path.exists(base + '.tar.zst'):
        raise SystemExit('testbundle: %s.tar.zst cannot be read (Ferry reads docker-archives as plain or gzip '
                         'tars only): put k3s-airgap-images-%s.tar or .tar.gz from the same release beside it'
                         % (base, goarch))
    return None


def k3s_layout(version_dir):
    """Which kind of k3s artifacts ``version_dir`` holds; the one place that decides. Returns (kind, files):

    ('release', {arch: {'binary', 'sums', 'images'}}) for upstream release files: k3s + sha256sum-amd64.txt +
    k3s-airgap-images-amd64.tar[.gz], and aarch64 too when k3s-arm64 is there (then with its sum file and archive);
    ('test-bed', {'x86_64': {'binary', 'sums'}}) for the test bed's build: k3s + sha256sum.txt (images in ../images);
    (None, reason) for neither. An incomplete release (a sum file of upstream's name but a file missing) is an error.
    """
    def has(name):
        return os.path.isfile(os.path.join(version_dir, name))

    if not os.path.isdir(version_dir):
        return None, '%s is not a directory' % version_dir
    if has('sha256sum-amd64.txt'):
        files = {}
        for arch, goarch, binary in K3S_RELEASE_FILES:
            if goarch != 'amd64' and not has(binary):
                continue
            wanted = [binary, 'sha256sum-%s.txt' % goarch]
            missing = [name for name in wanted if not has(name)]
            images = _airgap_archive(version_dir, goarch)
            if images is None:
                missing.append('k3s-airgap-images-%s.tar[.gz]' % goarch)
            if missing:
                raise SystemExit('testbundle: %s looks like an upstream k3s release (sha256sum-amd64.txt) but lacks %s'
                                 % (version_dir, ', '.join(missing)))
            files[arch] = {'binary': os.path.join(version_dir, binary),
                           'sums': os.path.join(version_dir, wanted[1]), 'images': images}
        return 'release', files
    if has('k3s') and has('sha256sum.txt'):
        return 'test-bed', {'x86_64': {'binary': os.path.join(version_dir, 'k3s'),
                                       'sums': os.path.join(version_dir, 'sha256sum.txt')}}
    return None, ('%s holds neither kind of k3s artifacts: expected k3s + sha256sum.txt (test-bed build) or k3s + '
                  'sha256sum-amd64.txt + k3s-airgap-images-amd64.tar[.gz] (upstream release); found: %s'
                  % (version_dir, ', '.join(sorted(os.listdir(version_dir))) or 'nothing'))


def k3s_release_version(top):
    """The release to test: $FERRY_K3S_RELEASE_VERSION, else the one release directory under ``top``.

    Returns (version, None), or (None, 'test-bed' | 'none') when ``top`` holds no release.
    """
    wanted = os.environ.get('FERRY_K3S_RELEASE_VERSION', '')
    if wanted:
        kind, found = k3s_layout(os.path.join(top, wanted))
        if kind != 'release':
            raise SystemExit('testbundle: FERRY_K3S_RELEASE_VERSION=%s: %s' % (
                wanted, found if kind is None else '%s holds the test-bed build, not upstream release artifacts'
                % os.path.join(top, wanted)))
        return wanted, None
    if not os.path.isdir(top):
        return None, 'none'
    kinds = {}
    for name in sorted(os.listdir(top)):
        if K3S_VERSION_RE.match(name):
            kinds.setdefault(k3s_layout(os.path.join(top, name))[0], []).append(name)
    releases = kinds.get('release', [])
    if len(releases) > 1:
        raise SystemExit('testbundle: %s holds %d k3s releases (%s): say which one with FERRY_K3S_RELEASE_VERSION'
                         % (top, len(releases), ', '.join(releases)))
    if releases:
        return releases[0], None
    return None, 'test-bed' if kinds.get('test-bed') else 'none'


def _qualified(tag):
    """A docker-archive RepoTag as a full ref: rancher/pause:3.6 -> docker.io/rancher/pause:3.6."""
    first = tag.split('/', 1)[0]
    if '/' not in tag:
        return 'docker.io/library/' + tag
    if '.' in first or ':' in first or first == 'localhost':
        return tag
    return 'docker.io/' + tag


def airgap_refs(path):
    """Every RepoTag of a docker-archive's manifest.json as a full ref, sorted.

    The archive comes from outside: members are checked (_safetar), nothing is extracted, manifest.json is read
    only up to AIRGAP_MAX_MANIFEST bytes, and members, tags and tag syntax are limited.
    """
    try:
        tar = open_tar(path)
    except ValueError as exc:
        raise SystemExit('testbundle: %s' % exc)
    try:
        manifest = None
        for count, member in enumerate(iter_members(tar, path), 1):
            if count > AIRGAP_MAX_MEMBERS:
                raise SystemExit('testbundle: %s has more than %d members' % (path, AIRGAP_MAX_MEMBERS))
            if member_name(member) == 'manifest.json':
                manifest = member
        if manifest is None or not manifest.isreg():
            raise SystemExit('testbundle: %s has no manifest.json file: not a docker-archive' % path)
        if manifest.size > AIRGAP_MAX_MANIFEST:
            raise SystemExit('testbundle: %s: manifest.json has %d bytes, more than %d' % (
                path, manifest.size, AIRGAP_MAX_MANIFEST))
        reader = member_reader(tar, manifest, path)
        try:
            data = reader.read(AIRGAP_MAX_MANIFEST + 1)
        finally:
            reader.close()
    except ValueError as exc:  # unsafe or corrupt members (_safetar)
        raise SystemExit('testbundle: %s' % exc)
    finally:
        tar.close()
    try:
        entries = json.loads(data.decode('utf-8'))
    except ValueError as exc:
        raise SystemExit('testbundle: %s: manifest.json is not JSON: %s' % (path, exc))
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SystemExit('testbundle: %s: manifest.json is not a list of images' % path)
    tags = []
    for entry in entries:
        repo_tags = entry.get('RepoTags') or []
        if not isinstance(repo_tags, list) or not all(isinstance(t, str) and _TAG_RE.match(t) for t in repo_tags):
            raise SystemExit('testbundle: %s: manifest.json has RepoTags that are not image tags: %r' % (
                path, repo_tags if isinstance(repo_tags, list) else type(repo_tags).__name__))
        tags.extend(repo_tags)
    if not tags:
        raise SystemExit('testbundle: %s: manifest.json names no tagged image' % path)
    if len(tags) > AIRGAP_MAX_TAGS:
        raise SystemExit('testbundle: %s: manifest.json names %d tags, more than %d' % (
            path, len(tags), AIRGAP_MAX_TAGS))
    return sorted(set(_qualified(t) for t in tags))


def write_k3s_release_spec(path, version, k3s_version, key, files):
    """The spec of a k3s bundle from upstream release files (k3s_layout's ``files``): per arch the binary (stored
    as k3s, sha256 from upstream's sum file) and every image of the airgap archive, layers stored zstd."""
    rel = functools.partial(os.path.relpath, start=os.path.dirname(path))
    arches = [arch for arch, goarch, binary in K3S_RELEASE_FILES if arch in files]
    artifacts, images = [], []
    for arch in arches:
        found = files[arch]
        expected = _sha256sum_entry(found['sums'], os.path.basename(found['binary']))
        if sha256_file(found['binary']) != expected:
            raise SystemExit('testbundle: %s does not match %s (%s)' % (found['binary'], found['sums'], expected))
        archive = os.path.basename(found['images'])
        listed = [line.split() for line in _read(found['sums']).decode().splitlines()]
        listed = [f[0] for f in listed if len(f) == 2 and f[1].lstrip('*') == archive]
        if listed and sha256_file(found['images']) != listed[0]:
            raise SystemExit('testbundle: %s does not match %s (%s)' % (found['images'], found['sums'], listed[0]))
        if not listed:
            log('%s lists no %s: its sha256 is not checked (the bundle build checks every layer against its '
                'image config)' % (found['sums'], archive))
        artifact = {'name': 'k3s', 'arch': arch, 'src': rel(found['binary']), 'sha256': expected,
                    'version': k3s_version.lstrip('v')}
        if os.path.basename(found['binary']) != 'k3s':
            artifact['dest'] = 'k3s'  # k3s-arm64 is installed as k3s like the amd64 binary
        artifacts.append(artifact)
        images += [{'ref': ref, 'docker_archive': rel(found['images']), 'arch': arch}
                   for ref in airgap_refs(found['images'])]
    spec = {
        'name': 'ferry-k3s-release',
        'version': version,
        'arches': arches,
        'artifacts': artifacts,
        'images': images,
        'images_compression': 'zstd',
        'signing': {'key': rel(key), 'identity': 'ferry-test', 'namespace': 'ferry-bundle'},
    }
    return save_spec(path, spec, '--k3s from upstream k3s release artifacts')


def write_k3s_spec(path, version, k3s_version, key, k3s_arch='x86_64', declared=None):
    """The spec of a k3s bundle. From the test-bed build: the k3s binary (x86_64) and the two local
    docker-archives, gzip layers; from upstream release files: write_k3s_release_spec.

    ``k3s_arch`` (test-bed build only): the arch the spec declares the amd64 binary for; anything but x86_64
    makes a spec the build must refuse (the artifact arch check), for tests of that refusal. ``declared``
    (test-bed build only): the k3s version the spec records for the binary (default: the binary's own).
    """
    base = os.path.dirname(path)
    rel = functools.partial(os.path.relpath, start=base)
    top = k3s_artifacts_dir()
    kind, files = k3s_layout(os.path.join(top, k3s_version))
    if kind is None:
        raise SystemExit('testbundle: no k3s %s: %s (set FERRY_K3S_ARTIFACTS)' % (k3s_version, files))
    if kind == 'release':
        if k3s_arch != 'x86_64' or declared:
            raise SystemExit('testbundle: --k3s-arch and --k3s-declare are for the test-bed build only; %s is an '
                             'upstream release' % k3s_version)
        return write_k3s_release_spec(path, version, k3s_version, key, files)
    binary = files['x86_64']['binary']
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
        'arches': ['x86_64'] + ([k3s_arch] if k3s_arch != 'x86_64' else []),
        'artifacts': [{'name': 'k3s', 'arch': k3s_arch, 'src': rel(binary), 'sha256': expected,
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
    suffix = ('' if args.k3s_arch == 'x86_64' else '-as-' + args.k3s_arch) + (
        '-declared-' + args.k3s_declare if args.k3s_declare else '')
    spec = os.path.join(out, 'specs', 'ferry-k3s-%s-%s%s.yml' % (args.version, args.k3s, suffix))
    spec_sha = write_k3s_spec(spec, args.version, args.k3s, key, args.k3s_arch, args.k3s_declare)
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
                        'the k3s binary of that version and the pause and busybox docker-archives, or an upstream '
                        'release (k3s_layout)')
    parser.add_argument('--k3s-layout', action='store_true', help='print what $FERRY_K3S_ARTIFACTS holds: '
                        '"release <version>", "test-bed" or "none", and exit')
    parser.add_argument('--k3s-arch', default='x86_64', choices=['x86_64', 'aarch64'],
                        help='with --k3s (test-bed build): the arch the spec declares the amd64 k3s binary for; '
                        'aarch64 makes a spec whose build is refused (artifact k3s for aarch64 is an x86_64 ELF '
                        'binary)')
    parser.add_argument('--k3s-declare', metavar='VERSION', help='with --k3s (test-bed build): the k3s version the '
                        'bundle declares for that binary (e.g. 1.23.0+k3s1), for version-policy tests')
    args = parser.parse_args(argv)
    if args.k3s_layout:
        version, kind = k3s_release_version(k3s_artifacts_dir())
        print('release %s' % version if version else kind)
        return 0
    if not re.match(r'^\d+\.\d+(\.\d+)?$', args.version):
        parser.error('--version must look like 1.0.0')
    if args.k3s is not None and not K3S_VERSION_RE.match(args.k3s):
        parser.error('--k3s must look like v1.22.5+k3s1')
    if args.k3s_arch != 'x86_64' and not args.k3s:
        parser.error('--k3s-arch needs --k3s')
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
