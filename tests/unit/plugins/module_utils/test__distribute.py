# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Selection of a host's files, and the host mirror filled from a real bundle server."""

import contextlib
import hashlib
import http.server
import json
import os
import stat
import threading

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import DistributeError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pull import STAMP_FILE, Mirror, check_files, host_facts
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.select import select
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import platform_plan
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import pull
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import serve as S
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import BOTH_ARCHES, files_of, make_bundle, serving

RUNC = 'artifacts/x86_64/runc/runc.amd64'
CONTAINERD = 'artifacts/x86_64/containerd/containerd-1.6.20-linux-amd64.tar.gz'
RUNTIME = ['containerd', 'runc', 'cni-plugins']


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp('bundle')
    manifest = make_bundle(root, arches=BOTH_ARCHES)
    return str(root), manifest


def blob_paths(root, ref, platform):
    plan = platform_plan(ImageStore(os.path.join(root, 'images')), ref, platform)
    return set('images/blobs/sha256/' + d.split(':')[1] for d, dummy, dummy2 in plan['blobs'])


# ---------------------------------------------------------------- select

def test_select_x86_64(bundle):
    root, manifest = bundle
    sel = select(root, 'x86_64', RUNTIME + ['charts'])
    assert sel['platform'] == 'linux/amd64' and (sel['name'], sel['version']) == ('shop', '1.0')
    assert sel['artifacts'] == {
        'containerd': CONTAINERD, 'runc': RUNC,
        'cni-plugins': 'artifacts/x86_64/cni-plugins/cni-plugins-linux-amd64-v1.1.1.tgz',
        'charts': 'artifacts/noarch/charts/shop-1.0.tgz'}
    paths = [f['path'] for f in sel['files']]
    assert paths == sorted(paths) and len(paths) == len(set(paths))
    assert not [p for p in paths if 'aarch64' in p]
    assert sorted(sel['images']) == ['demo/pause:1.0', 'demo/tool:1.0', 'demo/web:1.0']
    assert sel['images_skipped'] == []
    expected = set(sel['artifacts'].values()) | {'images/oci-layout', 'images/index.json'}
    for ref in sel['images']:
        expected |= blob_paths(root, ref, 'linux/amd64')
    assert set(paths) == expected
    for f in sel['files']:   # sizes and digests are the manifest's
        assert manifest['files'][f['path']] == {'size': f['size'], 'sha256': f['sha256']}
    assert sel['bytes'] == sum(f['size'] for f in sel['files'])
    web = sel['images']['demo/web:1.0']
    store = ImageStore(os.path.join(root, 'images'))
    assert web['digest'] == store.refs()['demo/web:1.0']
    assert web['platform_digest'] == dict((i['ref'], i) for i in store.images())['demo/web:1.0']['platforms']['linux/amd64']
    # the arm64 manifests are not listed, the index is
    arm = blob_paths(root, 'demo/web:1.0', 'linux/arm64') - blob_paths(root, 'demo/web:1.0', 'linux/amd64')
    assert arm and not arm & set(paths)
    assert 'images/blobs/sha256/' + web['digest'].split(':')[1] in paths


def test_select_aarch64_skips_images_without_the_platform(bundle):
    root, dummy = bundle
    sel = select(root, 'aarch64', ['runc'])
    assert sel['platform'] == 'linux/arm64'
    assert sel['artifacts'] == {'runc': 'artifacts/aarch64/runc/runc.arm64'}
    assert sorted(sel['images']) == ['demo/pause:1.0', 'demo/web:1.0'] and sel['images_skipped'] == ['demo/tool:1.0']
    with pytest.raises(DistributeError, match='has no platform linux/arm64'):
        select(root, 'aarch64', [], images=['demo/tool:1.0'])


def test_select_images_and_apps(bundle):
    root, dummy = bundle
    sel = select(root, 'x86_64', [], images=['demo/web:1.0'], apps=['shop'])
    assert list(sel['images']) == ['demo/web:1.0'] and sel['artifacts'] == {}
    assert sel['apps'] == {'shop': ['1.0']}
    paths = set(f['path'] for f in sel['files'])
    assert {'apps/shop/1.0/values.yaml', 'apps/shop/1.0/templates/deploy.yaml'} <= paths
    assert paths == (blob_paths(root, 'demo/web:1.0', 'linux/amd64') | {'images/oci-layout', 'images/index.json'}
                     | {'apps/shop/1.0/values.yaml', 'apps/shop/1.0/templates/deploy.yaml'})
    # no images at all: no layout files either
    sel = select(root, 'x86_64', ['runc'], images=[])
    assert [f['path'] for f in sel['files']] == [RUNC] and sel['images'] == {}


def test_select_errors(bundle, tmp_path):
    root, dummy = bundle
    with pytest.raises(DistributeError) as exc:
        select(root, 'x86_64', ['k3s'])
    assert str(exc.value) == ("bundle shop 1.0 has no artifact 'k3s' for x86_64 "
                              "(it has for x86_64: cni-plugins, containerd, runc; noarch: charts)")
    with pytest.raises(DistributeError, match=r"has no image demo/nope:1 \(it has: demo/pause:1.0, demo/tool:1.0"):
        select(root, 'x86_64', [], images=['demo/nope:1'])
    with pytest.raises(DistributeError, match="has no app 'billing'"):
        select(root, 'x86_64', [], images=[], apps=['billing'])
    one = tmp_path / 'one'
    make_bundle(one, arches=('x86_64',), big=10)
    with pytest.raises(DistributeError) as exc:
        select(str(one), 'aarch64', ['runc'])
    assert str(exc.value).startswith('bundle shop 1.0 has no aarch64 ') and 'it carries: x86_64' in str(exc.value)
    with pytest.raises(DistributeError, match='cannot read'):
        select(str(tmp_path), 'x86_64', [])


def test_select_needs_listed_blobs(tmp_path):
    root = tmp_path / 'b'
    manifest = make_bundle(root, arches=('x86_64',), big=10)
    rel = sorted(blob_paths(str(root), 'demo/web:1.0', 'linux/amd64'))[0]
    del manifest['files'][rel]
    with open(os.path.join(str(root), 'manifest.json'), 'w') as fh:
        json.dump(manifest, fh)
    with pytest.raises(DistributeError, match='manifest.json does not list'):
        select(str(root), 'x86_64', [], images=['demo/web:1.0'])


# ---------------------------------------------------------------- the mirror

def test_check_files():
    good = {'path': 'a/b', 'size': 3, 'sha256': 'A' * 64}
    assert check_files([good]) == [('a/b', 3, 'a' * 64)]
    for bad, msg in (({'path': '../x', 'size': 1, 'sha256': 'a' * 64}, 'empty, "." or ".."'),
                     ({'path': '/etc/x', 'size': 1, 'sha256': 'a' * 64}, 'relative'),
                     ({'path': 'x.part', 'size': 1, 'sha256': 'a' * 64}, 'reserved'),
                     ({'path': 'x', 'size': -1, 'sha256': 'a' * 64}, 'non-negative'),
                     ({'path': 'x', 'size': 1, 'sha256': 'abc'}, '64 hex'),
                     ('x', 'expected')):
        with pytest.raises(DistributeError, match=msg):
            check_files([bad])
    with pytest.raises(DistributeError, match='twice'):
        check_files([good, good])


def _fetch_all(mirror, files):
    mirror.load_stamps()
    for rel, size, sha in mirror.plan(files):
        mirror.fetch(rel, size, sha)
    mirror.save_stamps()


def test_fetch_then_skip_by_stamp(bundle, tmp_path):
    root, manifest = bundle
    files = check_files(select(root, 'x86_64', RUNTIME)['files'])
    dest = str(tmp_path / 'mirror')
    with serving(root, tmp_path) as state:
        mirror = Mirror(dest, S.url_of(state, '127.0.0.1'), timeout=10, retries=0)
        _fetch_all(mirror, files)
    assert sorted(mirror.fetched) == sorted(rel for rel, dummy, dummy2 in files) and mirror.present == 0
    assert mirror.bytes_transferred == sum(size for dummy, size, dummy2 in files)
    for rel, size, sha in files:
        path = os.path.join(dest, rel)
        with open(path, 'rb') as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == sha
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
        assert not os.path.exists(path + '.part')
    # rerun, server gone: nothing hashed again (the stamps hold), nothing fetched
    hashed = []
    orig = pull.sha256_file
    pull.sha256_file = lambda path, progress=None: hashed.append(path) or orig(path)
    try:
        again = Mirror(dest, 'http://127.0.0.1:9/none', retries=0)
        again.load_stamps()
        assert again.plan(files) == [] and again.present == len(files) and hashed == []
        # a file rewritten in place (same size, other bytes) changes its stat: hashed, then refetched
        path = os.path.join(dest, RUNC)
        size = os.path.getsize(path)
        with open(path, 'r+b') as fh:
            fh.write(b'X' * 10)
        again = Mirror(dest)
        again.load_stamps()
        assert [rel for rel, dummy, dummy2 in again.plan(files)] == [RUNC] and hashed == [path]
        assert os.path.getsize(path) == size
    finally:
        pull.sha256_file = orig


def test_resume_from_a_truncated_part(bundle, tmp_path):
    root, manifest = bundle
    files = check_files(files_of(manifest, [CONTAINERD]))
    dest = tmp_path / 'mirror'
    part = dest / (CONTAINERD + '.part')
    os.makedirs(str(part.parent))
    with open(os.path.join(root, CONTAINERD), 'rb') as fh:
        data = fh.read()
    part.write_bytes(data[:100000])
    with serving(root, tmp_path) as state:
        mirror = Mirror(str(dest), S.url_of(state, '127.0.0.1'), retries=0)
        _fetch_all(mirror, files)
    assert mirror.resumed == [CONTAINERD] and mirror.fetched == [CONTAINERD]
    assert mirror.bytes_transferred == len(data) - 100000
    assert (dest / CONTAINERD).read_bytes() == data and not part.exists()


def test_part_of_another_file_is_started_over(bundle, tmp_path):
    root, manifest = bundle
    files = check_files(files_of(manifest, [CONTAINERD]))
    dest = tmp_path / 'mirror'
    part = dest / (CONTAINERD + '.part')
    os.makedirs(str(part.parent))
    part.write_bytes(b'an older build of this file')
    with serving(root, tmp_path) as state:
        mirror = Mirror(str(dest), S.url_of(state, '127.0.0.1'), retries=0)
        _fetch_all(mirror, files)
    size = manifest['files'][CONTAINERD]['size']
    assert mirror.bytes_transferred == size + size - len(b'an older build of this file')
    with open(os.path.join(root, CONTAINERD), 'rb') as fh:
        assert (dest / CONTAINERD).read_bytes() == fh.read()


class _Cutting(S._Handler):
    """Sends the headers of the whole file, then half of the body once per path, then hangs up."""
    cut = set()

    def send_body(self, handle, start, count):
        if self.path in self.cut:
            return S._Handler.send_body(self, handle, start, count)
        self.cut.add(self.path)
        self.connection.sendfile(handle, start, count // 2)
        self.close_connection = True
        self.connection.shutdown(2)


class _NoRanges(S._Handler):
    def byte_range(self, size):
        return None


@contextlib.contextmanager
def in_thread(root, handler):
    server = type('Server', (S.BundleServer,), {'handler_class': handler})(root, '127.0.0.1', 0, 'tok', 60)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield 'http://127.0.0.1:%d/tok' % server.server_address[1], server
    finally:
        server.shutdown()
        server.server_close()


def test_connection_dropped_mid_file_resumes(bundle, tmp_path):
    root, manifest = bundle
    files = check_files(files_of(manifest, [CONTAINERD, RUNC]))
    size = manifest['files'][CONTAINERD]['size']
    dest = tmp_path / 'mirror'
    _Cutting.cut = set()
    with in_thread(root, _Cutting) as (url, server):
        # no retries: the run fails, a .part with what arrived is kept
        first = Mirror(str(dest), url, retries=0)
        first.load_stamps()
        with pytest.raises(DistributeError, match='broke off after %d of %d bytes' % (size // 2, size)):
            first.fetch(CONTAINERD, size, files[0][2])
        assert first.bytes_transferred == size // 2
        assert os.path.getsize(str(dest / (CONTAINERD + '.part'))) == size // 2
        assert not (dest / CONTAINERD).exists()
        # the next run resumes: only the missing half crosses the network
        second = Mirror(str(dest), url, retries=0)
        _fetch_all(second, files[:1])
        assert second.resumed == [CONTAINERD] and second.bytes_transferred == size - size // 2 < size
        # with retries, one run rides over the cut (runc is cut on its first try too)
        third = Mirror(str(dest), url, retries=2, retry_delay=0)
        _fetch_all(third, files)
        assert third.fetched == [RUNC] and third.resumed == [RUNC]
        assert third.bytes_transferred == manifest['files'][RUNC]['size']
    for rel in (CONTAINERD, RUNC):
        with open(os.path.join(root, rel), 'rb') as fh:
            assert (dest / rel).read_bytes() == fh.read()


def test_server_without_ranges_restarts(bundle, tmp_path):
    root, manifest = bundle
    files = check_files(files_of(manifest, [RUNC]))
    dest = tmp_path / 'mirror'
    os.makedirs(str(dest / 'artifacts/x86_64/runc'))
    with open(os.path.join(root, RUNC), 'rb') as fh:
        data = fh.read()
    (dest / (RUNC + '.part')).write_bytes(data[:5000])
    with in_thread(root, _NoRanges) as (url, server):
        mirror = Mirror(str(dest), url, retries=0)
        _fetch_all(mirror, files)
    assert mirror.resumed == [] and mirror.bytes_transferred == len(data)
    assert (dest / RUNC).read_bytes() == data


def test_corrupt_file_on_the_server(tmp_path):
    root = tmp_path / 'b'
    manifest = make_bundle(root, arches=('x86_64',), big=4096)
    with open(os.path.join(str(root), RUNC), 'r+b') as fh:
        fh.write(b'tampered')
    files = check_files(files_of(manifest, [RUNC]))
    dest = tmp_path / 'mirror'
    with serving(root, tmp_path) as state:
        mirror = Mirror(str(dest), S.url_of(state, '127.0.0.1'), retries=3, retry_delay=0)
        with pytest.raises(DistributeError) as exc:
            _fetch_all(mirror, files)
    sha = manifest['files'][RUNC]['sha256']
    with open(os.path.join(str(root), RUNC), 'rb') as fh:
        actual = hashlib.sha256(fh.read()).hexdigest()
    assert str(exc.value) == ('sha256 mismatch for %s from http://127.0.0.1:%d: expected %s, actual %s; nothing was kept'
                              % (RUNC, state['port'], sha, actual))
    assert not (dest / RUNC).exists() and not (dest / (RUNC + '.part')).exists()
    assert mirror.bytes_transferred == 4096   # not retried: the server's file is simply wrong


def test_server_file_of_another_size(tmp_path):
    root = tmp_path / 'b'
    manifest = make_bundle(root, arches=('x86_64',), big=4096)
    with open(os.path.join(str(root), RUNC), 'ab') as fh:
        fh.write(b'more')
    dest = tmp_path / 'mirror'
    with serving(root, tmp_path) as state:
        mirror = Mirror(str(dest), S.url_of(state, '127.0.0.1'), retries=0)
        with pytest.raises(DistributeError, match='has 4100 bytes of %s, the bundle manifest says 4096' % RUNC):
            _fetch_all(mirror, check_files(files_of(manifest, [RUNC])))
    assert not (dest / RUNC).exists()


def test_server_down(tmp_path, bundle):
    root, manifest = bundle
    slept = []
    mirror = Mirror(str(tmp_path), 'http://127.0.0.1:9/tok', retries=2, retry_delay=0.5, sleep=slept.append)
    with pytest.raises(DistributeError) as exc:
        _fetch_all(mirror, check_files(files_of(manifest, [RUNC])))
    assert str(exc.value).startswith('cannot fetch %s from the bundle server http://127.0.0.1:9 (3 attempts): cannot reach'
                                     % RUNC)
    assert 'refused' in str(exc.value) and 'tok' not in str(exc.value)
    assert slept == [0.5, 1.0]


def test_wrong_token_is_a_404(bundle, tmp_path):
    root, manifest = bundle
    with serving(root, tmp_path) as state:
        mirror = Mirror(str(tmp_path / 'm'), 'http://127.0.0.1:%d/wrong' % state['port'], retries=3)
        with pytest.raises(DistributeError, match=r'has no %s \(HTTP 404\): a wrong token' % RUNC):
            _fetch_all(mirror, check_files(files_of(manifest, [RUNC])))


def test_prune(bundle, tmp_path):
    root, manifest = bundle
    dest = tmp_path / 'm'
    keep = 'images/blobs/sha256/' + 'a' * 64
    for rel in (keep, 'images/blobs/sha256/' + 'b' * 64, 'artifacts/x86_64/old/old.bin', 'artifacts/x.part',
                'images/index.json', 'elsewhere/file'):
        os.makedirs(os.path.dirname(str(dest / rel)), exist_ok=True)
        (dest / rel).write_bytes(b'x')
    mirror = Mirror(str(dest))
    files = [(keep, 1, 'a' * 64), ('images/index.json', 1, 'b' * 64)]
    gone = mirror.prune_candidates(files)
    assert gone == ['artifacts/x.part', 'artifacts/x86_64/old/old.bin', 'images/blobs/sha256/' + 'b' * 64]
    mirror.prune(gone)
    assert (dest / keep).exists() and (dest / 'elsewhere/file').exists() and (dest / 'images/index.json').exists()
    assert not any((dest / rel).exists() for rel in gone)


def test_host_facts():
    arts, store = host_facts('/m', {'runc': RUNC}, [('images/index.json', 1, 'a')])
    assert arts == {'runc': '/m/' + RUNC} and store == '/m/images'
    assert host_facts('/m', {}, [(RUNC, 1, 'a')]) == ({}, None)


def test_select_over_real_test_bundle():
    """The bundle tests/support/testbundle.py builds from real Debian artifacts, when it is there."""
    root = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'output', 'testbundle', '1.0.0')
    if not os.path.isfile(os.path.join(root, 'manifest.json')):
        pytest.skip('tests/support/testbundle.py has not built the test bundle')
    for arch, goarch in (('x86_64', 'amd64'), ('aarch64', 'arm64')):
        sel = select(root, arch, RUNTIME)
        assert sel['artifacts']['containerd'] == 'artifacts/%s/containerd/containerd-1.6.20-linux-%s.tar.gz' % (arch, goarch)
        assert sel['artifacts']['runc'] == 'artifacts/%s/runc/runc.%s' % (arch, goarch)
        assert set(sel['images']) >= {'ferry.test/busybox:1.35', 'ferry.test/pause:1.0'}
        assert sel['images_skipped'] == []
        other = 'aarch64' if arch == 'x86_64' else 'x86_64'
        assert not [f for f in sel['files'] if other in f['path']]


def test_stamps_are_saved_during_a_long_run(bundle, tmp_path, monkeypatch):
    root, manifest = bundle
    files = check_files(files_of(manifest, [CONTAINERD, RUNC]))
    dest = tmp_path / 'mirror'
    monkeypatch.setattr(pull, 'STAMP_SAVE_INTERVAL', -1)
    with serving(root, tmp_path) as state:
        mirror = Mirror(str(dest), S.url_of(state, '127.0.0.1'), retries=0)
        mirror.fetch(*files[0])   # no save_stamps() call: an interrupted run
    with open(str(dest / STAMP_FILE)) as fh:
        stamps = json.load(fh)['files']
    assert list(stamps) == [CONTAINERD] and stamps[CONTAINERD]['sha256'] == files[0][2]
    later = Mirror(str(dest))
    later.load_stamps()
    assert later.have(*files[0]) and not later.stamps_changed   # trusted without hashing


# ---------------------------------------------------------------- hardening (issue 9, items 5 and 8)

class _Redirecting(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a redirect to ``target`` + the path (a bundle server never does)."""
    target = None

    def do_GET(self):
        self.send_response(302)
        self.send_header('Location', self.target + self.path)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


def test_redirects_are_refused(bundle, tmp_path):
    root, manifest = bundle
    files = check_files(files_of(manifest, [RUNC]))
    with serving(root, tmp_path, token='') as state:
        # the target would answer: a redirect to the real server, with a password
        _Redirecting.target = 'http://someone:pa55@127.0.0.1:%d' % state['port']
        other = http.server.HTTPServer(('127.0.0.1', 0), _Redirecting)
        thread = threading.Thread(target=other.serve_forever, kwargs={'poll_interval': 0.05})
        thread.daemon = True
        thread.start()
        try:
            base = 'http://127.0.0.1:%d' % other.server_address[1]
            mirror = Mirror(str(tmp_path / 'm'), base, retries=3, sleep=lambda s: None)
            with pytest.raises(DistributeError) as exc:
                _fetch_all(mirror, files)
        finally:
            other.shutdown()
            other.server_close()
    assert str(exc.value) == (
        'the bundle server %s answered %s with a redirect (HTTP 302 to http://127.0.0.1:%d/%s); a bundle server '
        'never redirects, so it was not followed: is another server listening on that port?' % (
            base, RUNC, state['port'], RUNC))
    assert mirror.fetched == [] and mirror.bytes_transferred == 0 and not (tmp_path / 'm' / RUNC).exists()


def test_messages_name_the_server_without_userinfo_or_token(bundle, tmp_path):
    root, manifest = bundle
    mirror = Mirror(str(tmp_path), 'http://ferry:pa55@127.0.0.1:9/', token='s3cr3tT0ken', retries=0)
    with pytest.raises(DistributeError) as exc:
        _fetch_all(mirror, check_files(files_of(manifest, [RUNC])))
    assert str(exc.value).startswith('cannot fetch %s from the bundle server http://127.0.0.1:9 (1 attempts): cannot reach '
                                     'http://127.0.0.1:9' % RUNC)
    assert 'pa55' not in str(exc.value) and 's3cr3tT0ken' not in str(exc.value)


def test_token_option_and_token_in_url_reach_the_same_files(bundle, tmp_path):
    root, manifest = bundle
    files = check_files(files_of(manifest, [RUNC]))
    with serving(root, tmp_path, token='tok') as state:
        apart = Mirror(str(tmp_path / 'a'), S.url_of(state, '127.0.0.1', with_token=False), token='tok', retries=0)
        _fetch_all(apart, files)
        joined = Mirror(str(tmp_path / 'b'), S.url_of(state, '127.0.0.1'), retries=0)
        _fetch_all(joined, files)
    assert apart.fetched == joined.fetched == [RUNC]
    assert (tmp_path / 'a' / RUNC).read_bytes() == (tmp_path / 'b' / RUNC).read_bytes()


def test_redact_url():
    from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import redact_url
    assert redact_url('http://u:p@ss@host:1/tok/x', ['tok']) == 'http://host:1/********/x'
    assert redact_url('cannot fetch HTTPS://user@example.com/a?b=c@d: e@f', ['']) == 'cannot fetch HTTPS://example.com/a?b=c@d: e@f'
    assert redact_url('/local/path@1') == '/local/path@1'
