# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/support/testbundle.py --k3s: which layout a k3s version directory holds (test-bed build or upstream
release files), and the spec it writes for a FAKE upstream release built here (no network, no docker)."""

import hashlib
import os

import pytest
import yaml
import zstandard

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.fetch import artifact_path, fetch_artifact
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.spec import load_spec_file
from ansible_collections.ferry.airgap.plugins.module_utils._oci.archive import import_docker_archive
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import OciError
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._oci.sync import sync_images
from ansible_collections.ferry.airgap.tests.support import testbundle
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import EM_X86_64, elf
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import (
    Image, docker_legacy_entries, docker_new_entries, layer, manifest_of, tar_bytes, write_tar)

VERSION = 'v1.33.8+k3s1'
# As `docker save docker.io/rancher/...` writes them: familiar names.
TAGS = ('rancher/mirrored-pause:3.6', 'rancher/mirrored-library-busybox:1.36.1')
REFS = ['docker.io/rancher/mirrored-library-busybox:1.36.1', 'docker.io/rancher/mirrored-pause:3.6']
NEITHER = ('expected k3s + sha256sum.txt (test-bed build) or k3s + sha256sum-amd64.txt + '
           'k3s-airgap-images-amd64.tar[.gz] (upstream release)')


def sha(data):
    return hashlib.sha256(data).hexdigest()


def images_of(arch):
    return [Image(arch, layers=[layer({'pause': b'pause ' + arch.encode()})], tags=TAGS[:1]),
            Image(arch, layers=[layer({'bin/busybox': b'busybox ' + arch.encode()})], tags=TAGS[1:])]


def fake_release(top, version=VERSION, arm64=False, suffix='.tar', sums_list_archive=True):
    """A version directory as github.com/k3s-io/k3s/releases has it (small fake files)."""
    d = top / version
    d.mkdir(parents=True)
    for goarch, binary, arch, entries in (('amd64', 'k3s', 'x86_64', docker_legacy_entries),
                                          ('arm64', 'k3s-arm64', 'aarch64', docker_new_entries)):
        if goarch == 'arm64' and not arm64:
            continue
        data = b'\x7fELF fake k3s ' + goarch.encode()
        (d / binary).write_bytes(data)
        archive = 'k3s-airgap-images-%s%s' % (goarch, suffix)
        write_tar(d / archive, entries(images_of(arch)), compress=suffix == '.tar.gz')
        lines = ['%s  %s' % (sha(data), binary), '%s  k3s-images.txt' % ('0' * 64)]
        if sums_list_archive:
            lines.append('%s  %s' % (sha((d / archive).read_bytes()), archive))
        (d / ('sha256sum-%s.txt' % goarch)).write_text('\n'.join(lines) + '\n')
    return d


@pytest.fixture
def top(tmp_path, monkeypatch):
    found = tmp_path / 'k3s-artifacts'
    found.mkdir()
    monkeypatch.setenv('FERRY_K3S_ARTIFACTS', str(found))
    monkeypatch.delenv('FERRY_K3S_RELEASE_VERSION', raising=False)
    return found


def write_spec(tmp_path, version=VERSION):
    specs = tmp_path / 'out' / 'specs'
    specs.mkdir(parents=True, exist_ok=True)
    path = specs / ('ferry-k3s-1.0.0-%s.yml' % version)
    testbundle.write_k3s_spec(str(path), '1.0.0', version, str(tmp_path / 'out' / 'keys' / 'ferry-test'))
    with open(str(path)) as fh:
        return str(path), yaml.safe_load(fh)


def test_an_amd64_release_becomes_a_zstd_spec_with_every_tag_of_the_airgap_archive(tmp_path, top):
    d = fake_release(top)
    assert testbundle.k3s_layout(str(d))[0] == 'release'
    path, spec = write_spec(tmp_path)
    assert spec['name'] == 'ferry-k3s-release' and spec['arches'] == ['x86_64']
    assert spec['images_compression'] == 'zstd'
    src = os.path.relpath(str(d / 'k3s'), os.path.dirname(path))
    assert spec['artifacts'] == [{'name': 'k3s', 'arch': 'x86_64', 'src': src, 'sha256': sha((d / 'k3s').read_bytes()),
                                  'version': '1.33.8+k3s1'}]
    archive = os.path.relpath(str(d / 'k3s-airgap-images-amd64.tar'), os.path.dirname(path))
    assert spec['images'] == [{'ref': ref, 'docker_archive': archive, 'arch': 'x86_64'} for ref in REFS]
    # the spec is valid, and each ref is found in the multi-image archive (familiar RepoTags match full refs)
    loaded = load_spec_file(path)
    store = ImageStore(str(tmp_path / 'store'))
    store.init()
    sync_images(store, loaded['images'], loaded['arches'], loaded['images_compression'])
    assert sorted(store.refs()) == REFS
    assert manifest_of(store, REFS[1], 'amd64')['layers'][0]['mediaType'].endswith('+zstd')


def test_arm64_binary_and_gzip_archives_make_one_image_per_ref_for_both_arches(tmp_path, top):
    d = fake_release(top, arm64=True, suffix='.tar.gz')
    path, spec = write_spec(tmp_path)
    assert spec['arches'] == ['x86_64', 'aarch64']
    arm = [a for a in spec['artifacts'] if a['arch'] == 'aarch64'][0]
    assert arm['dest'] == 'k3s' and arm['src'].endswith('/k3s-arm64')
    assert arm['sha256'] == sha((d / 'k3s-arm64').read_bytes())
    expected = [(r, 'x86_64') for r in REFS] + [(r, 'aarch64') for r in REFS]
    assert [(i['ref'], i['arch']) for i in spec['images']] == expected
    loaded = load_spec_file(path)
    store = ImageStore(str(tmp_path / 'store'))
    store.init()
    sync_images(store, loaded['images'], loaded['arches'], 'zstd')
    for ref in REFS:
        assert manifest_of(store, ref, 'amd64') != manifest_of(store, ref, 'arm64')


def test_an_airgap_archive_the_sum_file_does_not_list_is_logged_not_refused(tmp_path, top, capsys):
    fake_release(top, sums_list_archive=False)
    write_spec(tmp_path)
    assert 'lists no k3s-airgap-images-amd64.tar: its sha256 is not checked' in capsys.readouterr().err


def test_zstd_archives_cannot_be_read_and_say_which_files_can(tmp_path, top):
    d = fake_release(top)
    raw = (d / 'k3s-airgap-images-amd64.tar').read_bytes()
    (d / 'k3s-airgap-images-amd64.tar').unlink()
    (d / 'k3s-airgap-images-amd64.tar.zst').write_bytes(zstandard.ZstdCompressor().compress(raw))
    with pytest.raises(SystemExit) as exc:
        testbundle.k3s_layout(str(d))
    assert 'k3s-airgap-images-amd64.tar.zst cannot be read' in str(exc.value)
    assert 'put k3s-airgap-images-amd64.tar or .tar.gz' in str(exc.value)
    # what that message stands on: the docker-archive import refuses zstd input
    store = ImageStore(str(tmp_path / 'store'))
    store.init()
    with pytest.raises((OciError, ValueError)) as exc:
        import_docker_archive(store, str(d / 'k3s-airgap-images-amd64.tar.zst'), REFS[0], ['x86_64'])
    assert 'zstd-compressed' in str(exc.value)


@pytest.mark.parametrize('drop, missing', [
    ('k3s-airgap-images-amd64.tar', 'k3s-airgap-images-amd64.tar[.gz]'),
    ('k3s', 'k3s'),
    ('sha256sum-arm64.txt', 'sha256sum-arm64.txt'),
])
def test_an_incomplete_release_names_what_it_lacks(top, drop, missing):
    d = fake_release(top, arm64=True)
    (d / drop).unlink()
    with pytest.raises(SystemExit) as exc:
        testbundle.k3s_layout(str(d))
    assert 'looks like an upstream k3s release (sha256sum-amd64.txt) but lacks %s' % missing in str(exc.value)


def test_neither_layout_is_refused_naming_both(tmp_path, top):
    d = top / VERSION
    d.mkdir()
    (d / 'k3s').write_bytes(b'k3s')
    with pytest.raises(SystemExit) as exc:
        write_spec(tmp_path)
    assert NEITHER in str(exc.value) and 'found: k3s' in str(exc.value)


def test_a_binary_that_does_not_match_its_sum_file_is_refused(tmp_path, top):
    d = fake_release(top)
    (d / 'k3s').write_bytes(b'tampered')
    with pytest.raises(SystemExit) as exc:
        write_spec(tmp_path)
    assert 'k3s does not match' in str(exc.value) and 'sha256sum-amd64.txt' in str(exc.value)


def test_an_archive_that_does_not_match_its_sum_file_is_refused(tmp_path, top):
    d = fake_release(top)
    with open(str(d / 'k3s-airgap-images-amd64.tar'), 'ab') as fh:
        fh.write(b'\0' * 512)
    with pytest.raises(SystemExit) as exc:
        write_spec(tmp_path)
    assert 'k3s-airgap-images-amd64.tar does not match' in str(exc.value)


def hostile_archive(d, entries):
    path = d / 'k3s-airgap-images-amd64.tar'
    write_tar(path, entries)
    sums = d / 'sha256sum-amd64.txt'
    sums.write_text('%s  k3s\n' % sha((d / 'k3s').read_bytes()))
    return path


@pytest.mark.parametrize('entries, words', [
    ([('../manifest.json', b'[]')], ["'..' component"]),
    ([('layer.tar', b'x')], ['no manifest.json file']),
    ([('manifest.json', b'{"RepoTags": 1}')], ['not a list of images']),
    ([('manifest.json', b'[{"RepoTags": ["Bad Tag"]}]')], ['RepoTags that are not image tags', 'Bad Tag']),
    ([('manifest.json', b'[{"RepoTags": []}]')], ['names no tagged image']),
    ([('manifest.json', b'[{"RepoTags": ["a/b:1"]}]' + b' ' * 4096)], ['manifest.json has 4121 bytes, more than 4096']),
])
def test_a_hostile_airgap_archive_is_refused_without_extracting(tmp_path, top, monkeypatch, entries, words):
    monkeypatch.setattr(testbundle, 'AIRGAP_MAX_MANIFEST', 4096)
    d = fake_release(top)
    path = hostile_archive(d, entries)
    before = sorted(os.listdir(str(tmp_path)))
    with pytest.raises(SystemExit) as exc:
        testbundle.airgap_refs(str(path))
    for word in words:
        assert word in str(exc.value)
    assert sorted(os.listdir(str(tmp_path))) == before


def test_too_many_members_are_refused(top, monkeypatch):
    monkeypatch.setattr(testbundle, 'AIRGAP_MAX_MEMBERS', 3)
    d = fake_release(top)
    path = hostile_archive(d, [('f%d' % i, b'') for i in range(4)] + [('manifest.json', b'[]')])
    with pytest.raises(SystemExit) as exc:
        testbundle.airgap_refs(str(path))
    assert 'more than 3 members' in str(exc.value)


def test_refs_are_qualified_as_docker_does():
    assert testbundle._qualified('busybox:1') == 'docker.io/library/busybox:1'
    assert testbundle._qualified('rancher/pause:3.6') == 'docker.io/rancher/pause:3.6'
    assert testbundle._qualified('docker.io/rancher/pause:3.6') == 'docker.io/rancher/pause:3.6'
    assert testbundle._qualified('registry.local:5000/a/b:1') == 'registry.local:5000/a/b:1'
    assert testbundle._qualified('localhost/a:1') == 'localhost/a:1'


def fake_test_bed(top, version='v1.22.5+k3s1'):
    d = top / version
    d.mkdir(parents=True)
    (d / 'k3s').write_bytes(b'k3s test-bed build')
    (d / 'sha256sum.txt').write_text('%s  k3s\n' % sha(b'k3s test-bed build'))
    images = top / 'images'
    images.mkdir(exist_ok=True)
    lines = []
    for ref, name in testbundle.K3S_IMAGES:
        data = tar_bytes(docker_legacy_entries([Image(tags=(ref,))]))
        (images / name).write_bytes(data)
        lines.append('%s  %s' % (sha(data), name))
    (images / 'sha256sum.txt').write_text('\n'.join(lines) + '\n')
    return d


def test_the_test_bed_layout_keeps_its_spec(tmp_path, top):
    d = fake_test_bed(top)
    assert testbundle.k3s_layout(str(d))[0] == 'test-bed'
    path, spec = write_spec(tmp_path, 'v1.22.5+k3s1')
    assert spec['name'] == 'ferry-k3s' and spec['images_compression'] == 'gzip'
    assert [a['version'] for a in spec['artifacts']] == ['1.22.5+k3s1'] and 'dest' not in spec['artifacts'][0]
    assert [i['ref'] for i in spec['images']] == [ref for ref, name in testbundle.K3S_IMAGES]
    assert all('arch' not in i for i in spec['images'])


def layout_query(capsys):
    assert testbundle.main(['--k3s-layout']) == 0
    return capsys.readouterr().out.strip()


def test_the_layout_query(tmp_path, top, monkeypatch, capsys):
    assert layout_query(capsys) == 'none'
    fake_test_bed(top)
    fake_test_bed(top, 'v1.21.8+k3s1')
    assert layout_query(capsys) == 'test-bed'
    fake_release(top)
    assert layout_query(capsys) == 'release ' + VERSION
    fake_release(top, 'v1.34.1+k3s1')
    with pytest.raises(SystemExit) as exc:
        testbundle.main(['--k3s-layout'])
    assert ('holds 2 k3s releases (v1.33.8+k3s1, v1.34.1+k3s1): say which one with FERRY_K3S_RELEASE_VERSION'
            in str(exc.value))
    monkeypatch.setenv('FERRY_K3S_RELEASE_VERSION', 'v1.34.1+k3s1')
    assert layout_query(capsys) == 'release v1.34.1+k3s1'
    monkeypatch.setenv('FERRY_K3S_RELEASE_VERSION', 'v1.22.5+k3s1')
    with pytest.raises(SystemExit) as exc:
        testbundle.main(['--k3s-layout'])
    assert 'holds the test-bed build, not upstream release artifacts' in str(exc.value)
    monkeypatch.setenv('FERRY_K3S_ARTIFACTS', str(tmp_path / 'nowhere'))
    monkeypatch.delenv('FERRY_K3S_RELEASE_VERSION')
    assert layout_query(capsys) == 'none'


def test_k3s_arch_aarch64_declares_the_amd64_binary_for_aarch64_and_the_build_refuses_it(tmp_path, top):
    d = fake_test_bed(top)
    binary = elf(EM_X86_64)  # the test-bed build is an amd64 ELF: so is this header
    (d / 'k3s').write_bytes(binary)
    (d / 'sha256sum.txt').write_text('%s  k3s\n' % sha(binary))
    path = tmp_path / 'ferry-k3s-1.0.0-v1.22.5+k3s1-as-aarch64.yml'
    testbundle.write_k3s_spec(str(path), '1.0.0', 'v1.22.5+k3s1', str(tmp_path / 'key'), k3s_arch='aarch64')
    spec = load_spec_file(str(path))
    assert spec['arches'] == ['x86_64', 'aarch64']
    (art,) = spec['artifacts']
    assert (art['name'], art['arch'], art['src']) == ('k3s', 'aarch64', str(d / 'k3s'))
    # what bundle_artifact does first in the build: refused, nothing kept
    dest = artifact_path(str(tmp_path / 'bundle'), art['arch'], art['name'], art['dest'])
    with pytest.raises(BundleError, match=r'^artifact k3s for aarch64 is an x86_64 ELF binary \(e_machine 62\)'):
        fetch_artifact(art['src'], art['sha256'], dest, name=art['name'], arch=art['arch'])
    assert not os.path.exists(dest)
    # the default declares it for x86_64, as before
    testbundle.write_k3s_spec(str(path), '1.0.0', 'v1.22.5+k3s1', str(tmp_path / 'key'))
    assert [(a['name'], a['arch']) for a in load_spec_file(str(path))['artifacts']] == [('k3s', 'x86_64')]
    # a release layout does not take it
    fake_release(top)
    with pytest.raises(SystemExit, match='--k3s-arch and --k3s-declare are for the test-bed build only'):
        testbundle.write_k3s_spec(str(path), '1.0.0', VERSION, str(tmp_path / 'key'), k3s_arch='aarch64')
