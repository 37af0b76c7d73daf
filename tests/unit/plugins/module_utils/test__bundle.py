# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import copy
import io
import json
import os
import tarfile

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BLOB_DIR, MANIFEST, RESERVED, SIGNATURE, BundleError, SpecError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import apply_delta, build_delta, digest_inventory
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.fetch import artifact_path, fetch_artifact
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.build import build_manifest, images_from_layout
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import parse_manifest, read_manifest, write_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pack import _created_epoch, pack, unpack
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import sign, verify_signature
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.spec import load_spec_file, validate_spec
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.site import ExtraFilter
from ansible_collections.ferry.airgap.plugins.module_utils._bundle import build as build_module
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.verify import (
    arch_artifacts, artifact_versions, layer_compressions, verify_bundle)
from ansible_collections.ferry.airgap.plugins.module_utils._digest import pretty_json, sha256_bytes, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._fs import atomic_write
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import (
    EM_AARCH64, EM_X86_64, META, add_blob, elf, finish, make_bundle, siblings, tree, write)

HEX_A = 'a' * 64
HEX_B = 'b' * 64


def good_spec():
    return {
        'name': 'shop',
        'version': '2024.06.1',
        'arches': ['x86_64', 'aarch64'],
        'artifacts': [
            {'name': 'k3s', 'arch': 'x86_64', 'src': 'https://example.invalid/v1/k3s', 'sha256': HEX_A},
            {'name': 'k3s', 'arch': 'aarch64', 'src': 'https://example.invalid/v1/k3s-arm64', 'sha256': HEX_B,
             'dest': 'k3s'},
            {'name': 'chart', 'arch': 'noarch', 'src': 'files/shop-1.0.tgz', 'sha256': 'SHA256:' + HEX_A.upper()},
        ],
        'images': [
            {'ref': 'registry.example/shop/web:1.4', 'oci_archive': 'images/web.tar'},
            {'ref': 'docker.io/library/redis:7', 'registry': {'username': 'u', 'password': 'p'}, 'arch': 'aarch64'},
        ],
        'apps': [{'name': 'shop', 'version': '1.4.0', 'src': 'apps/shop'}],
        'signing': {'key': '~/.ssh/ferry', 'identity': 'release@example'},
    }


# ---------------------------------------------------------------- spec

def test_validate_spec_normalizes(tmp_path):
    spec = validate_spec(good_spec(), base_dir=str(tmp_path))
    assert spec['arches'] == ['x86_64', 'aarch64']
    arts = spec['artifacts']
    assert arts[0]['dest'] == 'k3s' and arts[1]['dest'] == 'k3s'
    assert arts[2]['sha256'] == HEX_A and arts[2]['src'] == str(tmp_path / 'files/shop-1.0.tgz')
    assert arts[2]['dest'] == 'shop-1.0.tgz'
    assert spec['images'][0]['oci_archive'] == str(tmp_path / 'images/web.tar')
    reg = spec['images'][1]['registry']
    assert reg == {'ref': 'docker.io/library/redis:7', 'username': 'u', 'password': 'p', 'insecure': False,
                   'ca_file': None}
    assert spec['signing']['namespace'] == 'ferry-bundle'
    assert spec['signing']['key'] == os.path.expanduser('~/.ssh/ferry')
    assert spec['images_compression'] == 'zstd'  # the default
    for value in ('zstd', 'gzip', 'none'):
        assert validate_spec(dict(good_spec(), images_compression=value))['images_compression'] == value


@pytest.mark.parametrize('mutate, path, words', [
    (lambda s: s['arches'].append('ppc64le'), 'arches[2]', ["unsupported arch 'ppc64le'"]),
    (lambda s: s['artifacts'][1].update(arch='ppc64le'), 'artifacts[1].arch', ["'ppc64le'"]),
    (lambda s: s['artifacts'][2].pop('sha256'), 'artifacts[2].sha256', ['required']),
    (lambda s: s['artifacts'][0].update(sha256='abc'), 'artifacts[0].sha256', ['64 hexadecimal', "'abc'"]),
    (lambda s: s['artifacts'][0].update(sha256='g' * 64), 'artifacts[0].sha256', ['64 hexadecimal']),
    (lambda s: s['artifacts'][1].update(sh256=HEX_A), 'artifacts[1].sh256', ['unknown key']),
    (lambda s: s.update(extra=1), 'extra', ['unknown key']),
    (lambda s: s['artifacts'].append(dict(s['artifacts'][0])), 'artifacts[3].name', ['duplicate', 'artifacts[0]']),
    (lambda s: s['apps'].append(dict(s['apps'][0])), 'apps[1].name', ['duplicate']),
    (lambda s: s['images'].append(dict(s['images'][0])), 'images[2].ref', ['duplicate']),
    (lambda s: s['images'][0].update(docker_archive='x.tar'), 'images[0]', ['exactly one']),
    (lambda s: s['images'][1].update(arch='riscv64'), 'images[1].arch', ["'riscv64'"]),
    (lambda s: s.update(arches=['x86_64']), 'artifacts[1].arch', ['not one of the bundle arches']),
    (lambda s: s.update(version=1.0), 'version', ['must be a string']),
    (lambda s: s.pop('name'), 'name', ['required']),
    (lambda s: s['artifacts'][0].update(src='ftp://x/y'), 'artifacts[0].src', ['ftp']),
    (lambda s: s['artifacts'][0].update(dest='../evil'), 'artifacts[0].dest', ['file name']),
    (lambda s: s['images'][1]['registry'].update(insecure='yes'), 'images[1].registry.insecure', ['true or false']),
    (lambda s: s['signing'].pop('key'), 'signing.key', ['required']),
    (lambda s: s.update(images_compression='xz'), 'images_compression',
     ["unknown layer compression 'xz'", 'zstd, gzip, none']),
    (lambda s: s.update(images_compression=True), 'images_compression', ['unknown layer compression True']),
    (lambda s: s['artifacts'][0].update(version='latest'), 'artifacts[0].version', ["'latest'", '1.7.18']),
    (lambda s: s['artifacts'][0].update(version='1.7 && rm'), 'artifacts[0].version', ['version such as']),
    (lambda s: s['artifacts'][0].update(version=1.6), 'artifacts[0].version', ['must be a string']),
])
def test_validate_spec_errors_name_the_key_path(mutate, path, words):
    spec = good_spec()
    mutate(spec)
    with pytest.raises(SpecError) as exc:
        validate_spec(spec)
    assert exc.value.path == path
    assert str(exc.value).startswith(path + ': ')
    for word in words:
        assert word in str(exc.value)


def test_a_ref_may_be_declared_once_per_arch():
    spec = good_spec()
    spec['images'] = [{'ref': 'docker.io/rancher/mirrored-pause:3.6', 'docker_archive': 'amd64.tar', 'arch': 'x86_64'},
                      {'ref': 'docker.io/rancher/mirrored-pause:3.6', 'docker_archive': 'arm64.tar', 'arch': 'aarch64'}]
    assert [i['arch'] for i in validate_spec(spec)['images']] == ['x86_64', 'aarch64']
    for second in ({'arch': 'x86_64'}, {}):
        bad = copy.deepcopy(spec)
        bad['images'][1].pop('arch')
        bad['images'][1].update(second)
        with pytest.raises(SpecError) as exc:
            validate_spec(bad)
        assert exc.value.path == 'images[1].ref'
        assert "duplicate image 'docker.io/rancher/mirrored-pause:3.6' (also images[0])" in str(exc.value)
        assert 'a different arch on each' in str(exc.value)


def test_load_spec_file_yaml_and_errors(tmp_path):
    p = tmp_path / 'bundle.yml'
    p.write_text('name: shop\nversion: "1.0"\narches: [x86_64, ppc64le]\n')
    with pytest.raises(SpecError) as exc:
        load_spec_file(str(p))
    assert exc.value.path == 'arches[1]' and str(p) in str(exc.value)
    p.write_text('name: shop\nversion: "1.0"\narches: [x86_64]\napps: [{name: a, version: "1", src: app}]\n')
    spec = load_spec_file(str(p))
    assert spec['apps'][0]['src'] == str(tmp_path / 'app')
    p.write_text('name: [unclosed\n')
    with pytest.raises(BundleError, match='not valid YAML'):
        load_spec_file(str(p))


# ---------------------------------------------------------------- fetch

def test_fetch_local_path_and_skip(tmp_path):
    src = tmp_path / 'k3s.bin'
    sha = write(src, b'binary')
    dest = artifact_path(str(tmp_path / 'b'), 'x86_64', 'k3s', 'k3s')
    r = fetch_artifact(str(src), sha, dest)
    assert r['changed'] and r['size'] == 6 and open(dest, 'rb').read() == b'binary'
    assert not fetch_artifact('file://' + str(src), sha, dest)['changed']


def test_fetch_wrong_sha256_leaves_nothing(tmp_path):
    src = tmp_path / 'k3s.bin'
    actual = write(src, b'binary')
    dest = artifact_path(str(tmp_path / 'b'), 'x86_64', 'k3s', 'k3s')
    with pytest.raises(BundleError) as exc:
        fetch_artifact('file://' + str(src), HEX_A, dest)
    msg = str(exc.value)
    assert str(src) in msg and HEX_A in msg and actual in msg
    assert not os.path.exists(dest)
    assert siblings(dest) == []


def test_fetch_replaces_stale_file_and_removes_it_on_failure(tmp_path):
    src = tmp_path / 'k3s.bin'
    sha = write(src, b'good')
    dest = artifact_path(str(tmp_path / 'b'), 'x86_64', 'k3s', 'k3s')
    write(dest, b'stale')
    with pytest.raises(BundleError):
        fetch_artifact(str(src), HEX_A, dest)
    assert not os.path.exists(dest)
    write(dest, b'stale')
    assert fetch_artifact(str(src), sha, dest)['changed']
    assert open(dest, 'rb').read() == b'good'


def test_fetch_http_uses_opener(tmp_path):
    seen = []

    def opener(url):
        seen.append(url)
        return io.BytesIO(b'from-http')
    dest = str(tmp_path / 'x')
    sha = sha256_bytes(b'from-http')
    assert fetch_artifact('https://example.invalid/x', sha, dest, opener=opener)['changed']
    assert seen == ['https://example.invalid/x'] and open(dest, 'rb').read() == b'from-http'


def test_fetch_missing_source(tmp_path):
    with pytest.raises(BundleError, match='cannot open'):
        fetch_artifact(str(tmp_path / 'nope'), HEX_A, str(tmp_path / 'd'))
    assert not os.path.exists(str(tmp_path / 'd'))


# ---------------------------------------------------------------- artifact arch (ELF e_machine)

WRONG_ARCH = ('artifact k3s for aarch64 is an x86_64 ELF binary (e_machine 62), not aarch64: %s; put the aarch64 '
              'build in the spec (src and sha256), or declare this file for arch x86_64')


def test_fetch_refuses_an_elf_binary_of_another_arch_and_keeps_nothing(tmp_path):
    src = tmp_path / 'k3s'
    sha = write(src, elf(EM_X86_64))
    dest = artifact_path(str(tmp_path / 'b'), 'aarch64', 'k3s', 'k3s')
    with pytest.raises(BundleError) as exc:
        fetch_artifact(str(src), sha, dest, name='k3s', arch='aarch64')
    assert str(exc.value) == WRONG_ARCH % src + '; nothing was kept'
    assert not os.path.exists(dest) and siblings(dest) == []
    # the same file already in the bundle (a cached build directory) is refused too
    write(dest, elf(EM_X86_64))
    with pytest.raises(BundleError, match='is an x86_64 ELF binary'):
        fetch_artifact(str(src), sha, dest, name='k3s', arch='aarch64')


@pytest.mark.parametrize('arch, data', [
    ('aarch64', elf(EM_AARCH64)),
    ('x86_64', elf(EM_X86_64)),
    ('aarch64', b'\x1f\x8b\x08\x00' + b'\0' * 40),      # a tar.gz: not checked
    ('aarch64', b'\xed\xab\xee\xdb\x03\x00\x00\x01'),  # an RPM: not checked
    ('noarch', elf(EM_X86_64)),                       # noarch artifacts are not checked
])
def test_fetch_accepts_the_right_arch_and_non_elf_files(tmp_path, arch, data):
    src = tmp_path / 'file'
    sha = write(src, data)
    dest = artifact_path(str(tmp_path / 'b'), arch, 'thing', 'file')
    assert fetch_artifact(str(src), sha, dest, name='thing', arch=arch)['changed']


def test_fetch_refuses_a_truncated_elf_header(tmp_path):
    src = tmp_path / 'k3s'
    sha = write(src, elf(EM_AARCH64)[:10])
    dest = artifact_path(str(tmp_path / 'b'), 'aarch64', 'k3s', 'k3s')
    with pytest.raises(BundleError) as exc:
        fetch_artifact(str(src), sha, dest, name='k3s', arch='aarch64')
    assert str(exc.value) == ('artifact k3s for aarch64: %s starts like an ELF binary but is not a valid one (ELF '
                              'header truncated: 10 bytes, e_machine needs 20): replace it with the aarch64 build; '
                              'nothing was kept' % src)
    assert not os.path.exists(dest)


def test_build_manifest_refuses_an_elf_binary_of_another_arch(tmp_path):
    root = make_bundle(tmp_path / 'b', extra={'artifacts/aarch64/k3s/k3s': elf(EM_X86_64)})
    with pytest.raises(BundleError) as exc:
        build_manifest(root, dict(META, arches=['x86_64', 'aarch64']))
    assert str(exc.value) == WRONG_ARCH % 'artifacts/aarch64/k3s/k3s'
    write(tmp_path / 'b/artifacts/aarch64/k3s/k3s', elf(EM_AARCH64)[:5])
    with pytest.raises(BundleError, match='artifacts/aarch64/k3s/k3s starts like an ELF binary but is not a valid one'):
        build_manifest(root, dict(META, arches=['x86_64', 'aarch64']))


def test_build_manifest_and_verify_accept_right_arch_elf_and_ignore_other_files(tmp_path):
    root = make_bundle(tmp_path / 'b', k3s=elf(EM_X86_64), extra={
        'artifacts/aarch64/k3s/k3s': elf(EM_AARCH64, 'big'),
        'artifacts/aarch64/k3s-selinux-el8/k3s-selinux-1.6-1.el8.noarch.rpm': b'\xed\xab\xee\xdb' + b'\0' * 40,
        'artifacts/noarch/tool/tool': elf(EM_X86_64)})
    manifest = build_manifest(root, dict(META, arches=['x86_64', 'aarch64']))
    write_manifest(root, manifest)
    assert verify_bundle(root, manifest) == []
    assert arch_artifacts(manifest) == {'x86_64': ['charts', 'k3s', 'tool'],
                                        'aarch64': ['charts', 'k3s', 'k3s-selinux-el8', 'tool']}


def test_verify_names_an_elf_binary_of_another_arch(tmp_path, keys, monkeypatch):
    """A signed bundle from a builder without the check (its sha256 all match): verification still refuses it."""
    root = make_bundle(tmp_path / 'b', extra={'artifacts/aarch64/k3s/k3s': elf(EM_X86_64),
                                              'artifacts/aarch64/runc/runc': elf(EM_AARCH64)[:12]})
    monkeypatch.setattr(build_module, 'artifact_arch_problem', lambda *args: None)
    manifest = finish(root, key=keys['good'], meta=dict(arches=['x86_64', 'aarch64']))
    monkeypatch.undo()
    problems = verify_bundle(root, manifest)
    assert problems == [
        WRONG_ARCH % 'artifacts/aarch64/k3s/k3s',
        'artifact runc for aarch64: artifacts/aarch64/runc/runc starts like an ELF binary but is not a valid one (ELF '
        'header truncated: 12 bytes, e_machine needs 20): replace it with the aarch64 build']


def test_validate_spec_artifact_versions():
    spec = good_spec()
    spec['artifacts'][0]['version'] = 'v1.33.1+k3s1'
    spec['artifacts'][1]['version'] = 'v1.33.1+k3s1'
    out = validate_spec(spec)
    assert [a['version'] for a in out['artifacts']] == ['v1.33.1+k3s1', 'v1.33.1+k3s1', None]
    assert out['versions'] == {'k3s': {'x86_64': 'v1.33.1+k3s1', 'aarch64': 'v1.33.1+k3s1'}}
    assert validate_spec(good_spec())['versions'] == {}


# ---------------------------------------------------------------- manifest + verify

def test_build_manifest_records_artifact_versions(tmp_path):
    root = make_bundle(tmp_path / 'b')
    manifest = build_manifest(root, dict(META, versions={'k3s': {'x86_64': 'v1.33.1+k3s1'}}))
    assert [(a['name'], a.get('version')) for a in manifest['artifacts']] == [
        ('charts', None), ('k3s', 'v1.33.1+k3s1')]
    assert parse_manifest(pretty_json(manifest))['artifacts'][1]['version'] == 'v1.33.1+k3s1'
    assert artifact_versions(manifest) == {'k3s': {'x86_64': 'v1.33.1+k3s1'}}
    with pytest.raises(BundleError) as exc:
        build_manifest(root, dict(META, versions={'containerd': {'aarch64': '1.7.18'}}))
    assert str(exc.value) == ('versions: aarch64/containerd has a version (1.7.18) but the bundle has no '
                              'artifacts/aarch64/containerd/')


def test_layer_compressions_per_platform(tmp_path):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root)
    # make_bundle's one amd64 image has a plain tar layer
    assert layer_compressions(root, manifest) == {'linux/amd64': ['none']}
    assert layer_compressions(root, dict(manifest, images=[])) == {}


def test_build_manifest_and_verify(tmp_path):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root)
    assert manifest['format'] == 1 and manifest['delta'] is False and manifest['base'] is None
    assert 'install.yml' in manifest['files'] and 'manifest.json' not in manifest['files']
    assert [a['path'] for a in manifest['artifacts']] == ['artifacts/noarch/charts/shop.tgz',
                                                          'artifacts/x86_64/k3s/k3s']
    assert manifest['apps'][0]['path'] == 'apps/shop/1.0' and len(manifest['apps'][0]['sha256']) == 64
    img = manifest['images'][0]
    assert img['ref'] == 'registry.example/shop/web:1.0' and img['platforms'] == {'linux/amd64': img['digest']}
    seen = []
    assert verify_bundle(root, manifest, progress=seen.append) == []
    assert sum(seen) == sum(e['size'] for e in manifest['files'].values())
    parsed, raw = read_manifest(root)
    assert parsed == manifest and raw == pretty_json(manifest)


def test_flipped_byte_names_file_expected_actual(tmp_path):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root)
    path = os.path.join(root, 'artifacts/x86_64/k3s/k3s')
    data = bytearray(open(path, 'rb').read())
    data[100] ^= 0x01
    actual = write(path, bytes(data))
    problems = verify_bundle(root, manifest)
    assert problems == ['sha256 mismatch: artifacts/x86_64/k3s/k3s: expected %s, actual %s' % (
        manifest['files']['artifacts/x86_64/k3s/k3s']['sha256'], actual)]


def test_missing_extra_and_size(tmp_path):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root)
    os.unlink(os.path.join(root, 'install.yml'))
    write(os.path.join(root, 'apps/shop/1.0/values.yaml'), 'replicas: 10\n')
    write(os.path.join(root, 'smuggled.sh'), 'rm -rf /')
    problems = verify_bundle(root, manifest)
    assert any(p.startswith('missing file: install.yml') for p in problems)
    assert 'size mismatch: apps/shop/1.0/values.yaml: expected 12 bytes, actual 13 bytes' in problems
    assert 'unlisted file: smuggled.sh (not in the manifest)' in problems


def test_missing_image_blob_is_named(tmp_path):
    root = make_bundle(tmp_path / 'b')
    man_d = images_from_layout(root)[0]['digest']
    manifest = finish(root)
    layer = json.loads(open(os.path.join(root, BLOB_DIR, man_d[7:])).read())['layers'][0]['digest']
    os.unlink(os.path.join(root, BLOB_DIR, layer[7:]))
    # listed in the manifest: reported as a missing file and as a blob the image needs
    problems = verify_bundle(root, manifest)
    assert 'missing file: %s/%s' % (BLOB_DIR, layer[7:]) in ' '.join(problems)
    assert any(p.startswith('image blob missing: %s/%s' % (BLOB_DIR, layer[7:])) for p in problems)
    # a manifest rebuilt after the blob was lost still catches it through the image references
    manifest = finish(root)
    problems = verify_bundle(root, manifest)
    assert problems == ['image blob missing: %s/%s (needed by blob %s)' % (BLOB_DIR, layer[7:], man_d)]


def test_blob_content_differs_from_name(tmp_path):
    root = make_bundle(tmp_path / 'b')
    wrong = os.path.join(root, BLOB_DIR, HEX_A)
    write(wrong, b'not a')
    with pytest.raises(BundleError, match='not its name'):
        finish(root)
    os.unlink(wrong)
    manifest = finish(root)
    real = sha256_bytes(b'not a')
    write(wrong, b'not a')
    manifest['files'][BLOB_DIR + '/' + HEX_A] = {'size': 5, 'sha256': real}
    problems = verify_bundle(root, manifest)
    assert problems == ['image blob %s/%s: content sha256 is %s, not its name' % (BLOB_DIR, HEX_A, real)]


def test_symlink_refused(tmp_path):
    root = make_bundle(tmp_path / 'b')
    os.symlink('/etc/passwd', os.path.join(root, 'passwd'))
    with pytest.raises(BundleError, match='passwd: symlinks are not allowed'):
        finish(root)


def test_parse_manifest_rejects_bad_paths():
    bad = {'format': 1, 'files': {'../etc/passwd': {'size': 1, 'sha256': HEX_A}}}
    with pytest.raises(BundleError, match=r"files\['../etc/passwd'\]"):
        parse_manifest(json.dumps(bad).encode())
    with pytest.raises(BundleError, match='format: expected 1, actual 2'):
        parse_manifest(b'{"format": 2, "files": {}}')


# ---------------------------------------------------------------- signatures

def test_sign_and_verify(tmp_path, keys):
    root = make_bundle(tmp_path / 'b')
    finish(root, key=keys['good'])
    mpath = os.path.join(root, MANIFEST)
    out = verify_signature(None, mpath, keys['allowed'], keys['identity'])
    assert out['principal'] == 'release@example' and 'Good "ferry-bundle" signature' in out['message']
    # without identity the principal is found from the signature
    assert verify_signature(None, mpath, keys['allowed'])['principal'] == 'release@example'


def test_unknown_key_fails_with_reason(tmp_path, keys):
    root = make_bundle(tmp_path / 'b')
    finish(root, key=keys['bad'])
    mpath = os.path.join(root, MANIFEST)
    with pytest.raises(BundleError) as exc:
        verify_signature(None, mpath, keys['allowed'], keys['identity'])
    msg = str(exc.value)
    assert 'Could not verify signature' in msg and 'not allowed for this identity' in msg
    with pytest.raises(BundleError, match='not listed in'):
        verify_signature(None, mpath, keys['allowed'])


def test_tampered_manifest_fails_with_reason(tmp_path, keys):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root, key=keys['good'])
    manifest['version'] = '6.6.6'
    write_manifest(root, manifest)
    with pytest.raises(BundleError) as exc:
        verify_signature(None, os.path.join(root, MANIFEST), keys['allowed'], keys['identity'])
    assert 'incorrect signature' in str(exc.value) and 'does not match the manifest content' in str(exc.value)


def test_wrong_namespace_and_missing_sig(tmp_path, keys):
    root = make_bundle(tmp_path / 'b')
    finish(root, key=keys['good'])
    mpath = os.path.join(root, MANIFEST)
    with pytest.raises(BundleError, match='namespace'):
        verify_signature(None, mpath, keys['allowed'], keys['identity'], namespace='other')
    os.unlink(mpath + '.sig')
    with pytest.raises(BundleError, match='is missing'):
        verify_signature(None, mpath, keys['allowed'], keys['identity'])


# ---------------------------------------------------------------- deltas

def two_versions(tmp_path):
    v1 = make_bundle(tmp_path / 'shop-1.0', version='1.0')
    finish(v1, '1.0')
    # 2.0: new app version (new path, one file identical), k3s unchanged, a new image layer, install.yml moved
    v2 = make_bundle(tmp_path / 'shop-2.0', version='2.0', app_text='replicas: 2\n',
                     extra={'playbooks/install.yml': '- hosts: all\n'})
    os.unlink(os.path.join(v2, 'install.yml'))
    add_blob(v2, b'new-layer' * 50)
    return v1, v2


def test_delta_ships_only_new_files_and_reconstructs(tmp_path, keys):
    v1, v2 = two_versions(tmp_path)
    full = finish(v2, '2.0', key=keys['good'])
    base_files = read_manifest(v1)[0]['files']
    base_hashes = set(e['sha256'] for e in base_files.values())
    summary = build_delta(v2, digest_inventory(v1), str(tmp_path / 'delta'),
                          signer=lambda p: sign(None, p, keys['good']))
    delta, _raw = read_manifest(str(tmp_path / 'delta'))
    present = delta['delta']['present']
    assert sorted(present) == sorted(r for r, e in full['files'].items() if e['sha256'] not in base_hashes)
    assert 'artifacts/x86_64/k3s/k3s' not in present and 'playbooks/install.yml' not in present
    assert 'apps/shop/2.0/values.yaml' in present
    assert summary['files_shipped'] == len(present) < summary['files_total'] == len(full['files'])
    on_disk = set(tree(tmp_path / 'delta')) - set(RESERVED)
    assert on_disk == set(present)
    assert delta['base']['version'] == '1.0' and delta['files'] == full['files']
    assert verify_bundle(str(tmp_path / 'delta'), delta, partial=True) == []
    verify_signature(None, str(tmp_path / 'delta' / MANIFEST), keys['allowed'], keys['identity'])

    out = str(tmp_path / 'rebuilt')
    apply_delta(str(tmp_path / 'delta'), v1, out)
    rebuilt, _raw = read_manifest(out)
    assert rebuilt['files'] == full['files']
    assert verify_bundle(out, rebuilt) == []
    expected = tree(v2)
    got = tree(out)
    for name in (MANIFEST, SIGNATURE):
        expected.pop(name)
        got.pop(name)
    assert got == expected
    verify_signature(None, os.path.join(out, MANIFEST), keys['allowed'], keys['identity'])
    assert siblings(out) == []


def test_delta_from_inventory_file_equals_delta_from_base_dir(tmp_path):
    v1, v2 = two_versions(tmp_path)
    finish(v2, '2.0')
    inv_path = str(tmp_path / 'site.digests.json')
    inv = digest_inventory(v1)
    assert sorted(inv) == ['manifest_sha256', 'name', 'sha256', 'version']
    assert inv['manifest_sha256'] == sha256_bytes(open(os.path.join(v1, MANIFEST), 'rb').read())
    assert inv['sha256'] == sorted(inv['sha256'])
    atomic_write(inv_path, pretty_json(inv))
    assert digest_inventory(inv_path) == inv
    assert digest_inventory(os.path.join(v1, MANIFEST)) == inv
    build_delta(v2, inv_path, str(tmp_path / 'd1'))
    build_delta(v2, v1, str(tmp_path / 'd2'))
    assert tree(tmp_path / 'd1') == tree(tmp_path / 'd2')


def test_delta_on_wrong_base_is_refused(tmp_path):
    v1, v2 = two_versions(tmp_path)
    finish(v2, '2.0')
    build_delta(v2, v1, str(tmp_path / 'delta'))
    other = make_bundle(tmp_path / 'other', version='1.0', app_text='replicas: 7\n')
    finish(other, '1.1')
    want = digest_inventory(v1)['manifest_sha256']
    have = digest_inventory(other)['manifest_sha256']
    out = str(tmp_path / 'out')
    with pytest.raises(BundleError) as exc:
        apply_delta(str(tmp_path / 'delta'), other, out)
    msg = str(exc.value)
    assert 'wrong base' in msg and want in msg and have in msg and 'shop 1.0' in msg and 'shop 1.1' in msg
    assert not os.path.exists(out) and siblings(out) == []
    with pytest.raises(BundleError, match='base bundle .* is missing'):
        apply_delta(str(tmp_path / 'delta'), str(tmp_path / 'nope'), out)
    with pytest.raises(BundleError, match='is not a delta'):
        apply_delta(v2, v1, out)


def test_delta_apply_with_damaged_base_leaves_nothing(tmp_path):
    v1, v2 = two_versions(tmp_path)
    finish(v2, '2.0')
    build_delta(v2, v1, str(tmp_path / 'delta'))
    with open(os.path.join(v1, 'artifacts/x86_64/k3s/k3s'), 'r+b') as f:
        f.write(b'X')
    out = str(tmp_path / 'out')
    with pytest.raises(BundleError, match='sha256 mismatch: artifacts/x86_64/k3s/k3s'):
        apply_delta(str(tmp_path / 'delta'), v1, out)
    assert not os.path.exists(out) and siblings(out) == []


def test_build_delta_failure_leaves_nothing(tmp_path):
    v1, v2 = two_versions(tmp_path)
    finish(v2, '2.0')
    os.unlink(os.path.join(v2, 'apps/shop/2.0/values.yaml'))
    dest = str(tmp_path / 'delta')
    with pytest.raises(BundleError, match='incomplete: apps/shop/2.0/values.yaml is missing'):
        build_delta(v2, v1, dest)
    assert not os.path.exists(dest) and siblings(dest) == []


# ---------------------------------------------------------------- pack / unpack

def test_pack_unpack_roundtrip_single(tmp_path):
    root = make_bundle(tmp_path / 'shop-1.0')
    manifest = finish(root)
    tar = str(tmp_path / 'out' / 'shop.tar')
    os.makedirs(os.path.dirname(tar))
    r = pack(root, tar)
    assert r['changed'] and r['parts'] is None and r['sha256'] == sha256_file(tar)[0]
    with tarfile.open(tar) as t:
        names = t.getnames()
    assert names[0] == 'shop-1.0' and names[1] == 'shop-1.0/manifest.json'
    assert pack(root, tar)['changed'] is False
    assert pack(root, tar, check_mode=True)['changed'] is False
    dest = str(tmp_path / 'unpacked')
    unpack(tar, dest)
    assert verify_bundle(dest, manifest) == []
    assert tree(dest) == tree(root)
    assert siblings(dest) == [] and siblings(tar) == []


def test_pack_unpack_roundtrip_chunked(tmp_path):
    root = make_bundle(tmp_path / 'shop-1.0')
    manifest = finish(root)
    tar = str(tmp_path / 'shop.tar')
    r = pack(root, tar, chunk_size=8192)
    assert len(r['parts']) > 2 and not os.path.exists(tar)
    listed = json.loads(open(tar + '.parts.json').read())
    assert listed['parts'] == r['parts'] and listed['sha256'] == r['sha256']
    for i, part in enumerate(r['parts']):
        path = '%s.%03d' % (tar, i)
        assert sha256_file(path) == (part['sha256'], part['size'])
        assert part['size'] <= 8192
    assert pack(root, tar, chunk_size=8192)['changed'] is False
    dest = str(tmp_path / 'unpacked')
    unpack(tar + '.000', dest)
    assert verify_bundle(dest, manifest) == []
    # repacking as a single tar removes the old chunks
    assert pack(root, tar)['changed'] is True
    assert not os.path.exists(tar + '.000') and not os.path.exists(tar + '.parts.json')


def test_damaged_and_missing_chunks(tmp_path):
    root = make_bundle(tmp_path / 'shop-1.0')
    finish(root)
    tar = str(tmp_path / 'shop.tar')
    r = pack(root, tar, chunk_size=8192)
    with open(tar + '.001', 'r+b') as f:
        f.write(b'\xff')
    dest = str(tmp_path / 'unpacked')
    with pytest.raises(BundleError) as exc:
        unpack(tar + '.000', dest)
    assert 'chunk %s.001: sha256 expected %s, actual' % (tar, r['parts'][1]['sha256']) in str(exc.value)
    os.unlink(tar + '.002')
    with pytest.raises(BundleError, match=r'missing chunk: .*shop\.tar\.002'):
        unpack(tar + '.000', dest)
    os.unlink(tar + '.parts.json')
    with pytest.raises(BundleError, match='parts.json is missing'):
        unpack(tar + '.000', dest)
    assert not os.path.exists(dest) and siblings(dest) == []


def test_truncated_tar_fails_clearly(tmp_path):
    root = make_bundle(tmp_path / 'shop-1.0')
    finish(root)
    tar = str(tmp_path / 'shop.tar')
    pack(root, tar)
    size = os.path.getsize(tar)
    with open(tar, 'r+b') as f:
        f.truncate(size // 2 + 100)
    dest = str(tmp_path / 'unpacked')
    with pytest.raises(BundleError) as exc:
        unpack(tar, dest)
    assert 'cannot unpack %s' % tar in str(exc.value) and 'truncated' in str(exc.value)
    assert not os.path.exists(dest) and siblings(dest) == []


def _evil_tar(path, member):
    with tarfile.open(path, 'w') as t:
        data = b'{"format": 1}'
        info = tarfile.TarInfo('b/manifest.json')
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
        t.addfile(member, io.BytesIO(b'x' * member.size) if member.isreg() else None)


@pytest.mark.parametrize('name, kind, link', [
    ('b/../../escape.txt', tarfile.REGTYPE, ''),
    ('/etc/cron.d/evil', tarfile.REGTYPE, ''),
    ('b/etc-link', tarfile.SYMTYPE, '/etc'),
    ('b/hard', tarfile.LNKTYPE, '/etc/shadow'),
])
def test_unsafe_tar_members_refused(tmp_path, name, kind, link):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    member.size = 1 if kind == tarfile.REGTYPE else 0
    tar = str(tmp_path / 'evil.tar')
    _evil_tar(tar, member)
    dest = str(tmp_path / 'unpacked')
    with pytest.raises(BundleError) as exc:
        unpack(tar, dest)
    assert name in str(exc.value) and 'unsafe member' in str(exc.value)
    assert not os.path.exists(dest) and siblings(dest) == []
    assert not os.path.exists(str(tmp_path / 'escape.txt'))


def test_unpack_needs_a_bundle(tmp_path):
    tar = str(tmp_path / 'x.tar')
    with tarfile.open(tar, 'w') as t:
        info = tarfile.TarInfo('a/readme')
        t.addfile(info, io.BytesIO(b''))
    with pytest.raises(BundleError, match='does not hold a bundle'):
        unpack(tar, str(tmp_path / 'd'))


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    target = str(tmp_path / 'f.json')

    def boom(*a):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'rename', boom)
    with pytest.raises(OSError):
        atomic_write(target, b'data')
    assert os.listdir(str(tmp_path)) == []


def test_created_uses_source_date_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv('SOURCE_DATE_EPOCH', '86400')
    root = make_bundle(tmp_path / 'b')
    meta = dict(META)
    meta.pop('created')
    assert build_manifest(root, meta)['created'] == '1970-01-02T00:00:00Z'
    assert _created_epoch({'created': '1970-01-02T00:00:00Z'}) == 86400
    assert copy.deepcopy(meta) == meta


def test_images_from_multi_platform_index(tmp_path):
    root = str(tmp_path / 'b')
    amd, _n = add_blob(root, {'schemaVersion': 2, 'layers': []})
    arm, _n = add_blob(root, {'schemaVersion': 2, 'layers': [], 'x': 1})
    att, _n = add_blob(root, {'schemaVersion': 2, 'layers': [], 'x': 2})
    index_d, index_n = add_blob(root, {'schemaVersion': 2, 'manifests': [
        {'digest': amd, 'platform': {'os': 'linux', 'architecture': 'amd64'}},
        {'digest': arm, 'platform': {'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'}},
        {'digest': att, 'platform': {'os': 'unknown', 'architecture': 'unknown'}}]})
    write(os.path.join(root, 'images/index.json'), json.dumps({'schemaVersion': 2, 'manifests': [
        {'mediaType': 'application/vnd.oci.image.index.v1+json', 'digest': index_d, 'size': index_n,
         'annotations': {'io.containerd.image.name': 'docker.io/library/redis:7'}}]}))
    # regression: the manifest writer said linux/arm64/v8 where the store said linux/arm64; both read the
    # one store now, and arm64's default variant never shows in a key
    assert images_from_layout(root) == [{'ref': 'docker.io/library/redis:7', 'digest': index_d,
                                         'platforms': {'linux/amd64': amd, 'linux/arm64': arm}}]
    write(os.path.join(root, 'images/oci-layout'), '{"imageLayoutVersion": "1.0.0"}')
    assert images_from_layout(root) == ImageStore(os.path.join(root, 'images')).images()
    # the image index references all three manifests: the verify walk needs every one of them
    os.unlink(os.path.join(root, BLOB_DIR, att[7:]))
    manifest = build_manifest(root, META)
    assert verify_bundle(root, manifest) == [
        'image blob missing: %s/%s (needed by blob %s)' % (BLOB_DIR, att[7:], index_d)]


def test_site_local_skipped_only_with_a_filter(tmp_path):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root)
    write(os.path.join(root, '.ferry-venv/bin/activate'), '# venv')
    os.symlink('lib', os.path.join(root, '.ferry-venv/lib64'))
    write(os.path.join(root, 'inventory/hosts.yml'), 'all: {}\n')
    write(os.path.join(root, 'images/stray'), 'x')
    # without a filter (the build side, apply_delta) every extra is a problem
    problems = verify_bundle(root, manifest)
    assert sorted(problems) == sorted([
        '.ferry-venv/lib64: symlinks are not allowed in a bundle (%s)' % root,
        'unlisted file: .ferry-venv/bin/activate (not in the manifest)',
        'unlisted file: images/stray (not in the manifest)',
        'unlisted file: inventory/hosts.yml (not in the manifest)'])
    skipped = []
    problems = verify_bundle(root, manifest, extra_filter=ExtraFilter(['images/st*']), skipped=skipped)
    assert problems == [] and skipped == ['.ferry-venv/', 'images/stray', 'inventory/hosts.yml']
    assert verify_bundle(root, manifest, extra_filter=ExtraFilter(builtin=False), skipped=skipped) != []


def test_extra_filter_is_exact():
    f = ExtraFilter()
    assert f.skip_dir('.ferry-venv') and f.skip_dir('collections/ansible_collections') and f.skip_dir('inventory/host_vars')
    assert not f.skip_dir('inventory') and not f.skip_dir('apps/x/collections') and not f.skip_dir('collections2')
    assert f.skip_file('inventory/hosts.yml') and f.skip_file('.ansible/tmp/x')
    assert not f.skip_file('inventory/hosts.yaml') and not f.skip_file('hosts.yml') and not f.skip_file('x.retry')
    with pytest.raises(BundleError, match='ignore_extra'):
        ExtraFilter(['a/../../b'])
