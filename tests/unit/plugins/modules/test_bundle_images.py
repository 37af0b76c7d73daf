# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bundle_images run in-process on archives built in code."""

import json
import tarfile

import pytest


from ansible_collections.ferry.airgap.plugins.modules import bundle_images

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support import modules as testlib
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.net import free_port
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import (
    Image, digest, docker_legacy_entries, docker_new_entries, layer, oci_entries, store_files, write_tar)

REF = 'registry.ferry.local/demo/web:1.0'


def run_module(capsys, args, check_mode=False, diff=False):
    """(exit code, result) of bundle_images with ``args``."""
    result, code = testlib.run_module(bundle_images, args, capsys, check_mode=check_mode, diff=diff)
    return code, result


@pytest.fixture
def archives(tmp_path):
    base = layer({'bin/sh': b'#' * 4000})
    return {
        'amd': write_tar(tmp_path / 'amd.tar', docker_legacy_entries([Image('x86_64', layers=[base])])),
        'arm': write_tar(tmp_path / 'arm.tar', docker_new_entries([Image('aarch64', layers=[base])])),
        'db': write_tar(tmp_path / 'db.tar', oci_entries([
            Image('x86_64', layers=[layer({'db': b'1'})]), Image('aarch64', layers=[layer({'db': b'2'})])]),
            compress=True),
        'base': base,
    }


def args_for(tmp_path, archives, compression='none'):
    """Layers stored as they arrive unless ``compression`` says otherwise (byte counts below are of raw layers)."""
    return {'store': str(tmp_path / 'store'), 'compression': compression, 'images': [
        {'ref': REF, 'docker_archive': archives['amd'], 'arch': 'x86_64'},
        {'ref': REF, 'docker_archive': archives['arm'], 'arch': 'aarch64'},
        {'ref': 'registry.ferry.local/demo/db:16', 'oci_archive': archives['db']},
    ]}


def test_adds_images_then_is_idempotent(capsys, tmp_path, archives):
    args = args_for(tmp_path, archives)
    code, result = run_module(capsys, args)
    assert code == 0, result
    assert result['changed'] is True
    assert result['added'] == [REF, 'registry.ferry.local/demo/db:16'] and result['updated'] == []
    assert [sorted(i['platforms']) for i in result['images']] == [['linux/amd64', 'linux/arm64']] * 2
    assert result['bytes_skipped'] == len(archives['base'])  # the base layer is shared by both arches
    assert result['bytes_written'] > 0
    files = store_files(tmp_path / 'store')
    indexes_and_manifests = set(d for i in result['images'] for d in [i['digest']] + list(i['platforms'].values()))
    assert len(indexes_and_manifests) == 6
    configs, layers = 4, 3  # web: one shared base layer; db: one layer per arch
    assert len([f for f in files if f.startswith('blobs/sha256/')]) == 6 + configs + layers

    code, again = run_module(capsys, args)
    assert code == 0
    assert again['changed'] is False
    assert (again['added'], again['updated'], again['bytes_written']) == ([], [], 0)
    assert again['bytes_skipped'] == result['bytes_written'] + result['bytes_skipped']
    assert again['images'] == result['images']
    assert store_files(tmp_path / 'store') == files


def test_check_mode_reports_and_touches_nothing(capsys, tmp_path, archives):
    args = args_for(tmp_path, archives)
    code, predicted = run_module(capsys, args, check_mode=True, diff=True)
    assert code == 0, predicted
    assert predicted['changed'] is True
    assert predicted['added'] == [REF, 'registry.ferry.local/demo/db:16']
    assert not (tmp_path / 'store').exists()
    assert predicted['diff']['before'] == {}
    assert sorted(predicted['diff']['after']) == sorted(predicted['added'])

    code, real = run_module(capsys, args, diff=True)
    assert real['images'] == predicted['images']
    assert real['bytes_written'] == predicted['bytes_written']
    assert real['diff']['after'] == predicted['diff']['after']

    code, noop = run_module(capsys, args, check_mode=True)
    assert noop['changed'] is False and noop['added'] == [] and noop['bytes_written'] == 0


def test_update_shows_in_diff(capsys, tmp_path, archives):
    store = str(tmp_path / 'store')
    run_module(capsys, {'store': store, 'images': [{'ref': REF, 'docker_archive': archives['amd']}]})
    v2 = write_tar(tmp_path / 'v2.tar', docker_legacy_entries([Image('x86_64', layers=[layer({'v': b'2'})])]))
    code, result = run_module(capsys, {'store': store, 'images': [{'ref': REF, 'docker_archive': v2}]}, diff=True)
    assert result['changed'] is True and result['updated'] == [REF]
    before, after = result['diff']['before'][REF], result['diff']['after'][REF]
    assert before != after and after == result['images'][0]['digest']


def test_unsafe_archive_fails_naming_member(capsys, tmp_path, archives):
    entries = docker_legacy_entries([Image()])
    entries.insert(2, {'name': 'evil', 'type': tarfile.SYMTYPE, 'linkname': '/etc/shadow'})
    bad = write_tar(tmp_path / 'bad.tar', entries)
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'),
                                       'images': [{'ref': REF, 'docker_archive': bad}]})
    assert code == 1 and result['failed'] is True
    assert "'evil'" in result['msg'] and bad in result['msg'] and 'absolute' in result['msg']
    assert store_files(tmp_path / 'store') == ['index.json', 'oci-layout']


def test_arch_mismatch_and_bad_options(capsys, tmp_path, archives):
    store = str(tmp_path / 'store')
    code, result = run_module(capsys, {'store': store, 'images': [
        {'ref': REF, 'docker_archive': archives['amd'], 'arch': 'aarch64'}]})
    assert code == 1 and 'is linux/amd64, expected one of: linux/arm64 (aarch64)' in result['msg']
    code, result = run_module(capsys, {'store': store, 'images': [
        {'ref': REF, 'docker_archive': archives['amd'], 'arch': 'ppc64le'}]})
    assert code == 1 and 'ppc64le' in result['msg'] and 'x86_64' in result['msg']
    code, result = run_module(capsys, {'store': store, 'images': [
        {'ref': REF, 'docker_archive': archives['amd'], 'oci_archive': archives['db']}]})
    assert code == 1 and 'mutually exclusive' in result['msg']
    code, result = run_module(capsys, {'store': store, 'images': [{'ref': REF}]})
    assert code == 1 and 'one of the following is required' in result['msg']


def test_unreachable_registry_fails_cleanly(capsys, tmp_path):
    port = free_port()
    source = '127.0.0.1:%d/demo/web:1.0' % port
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'), 'images': [
        {'ref': REF, 'registry': {'ref': source, 'password': 'hidden-secret', 'username': 'u', 'timeout': 5}}]})
    assert code == 1
    assert 'cannot reach registry http://127.0.0.1:%d' % port in result['msg'] and source in result['msg']
    assert 'Traceback' not in json.dumps(result)
    assert 'hidden-secret' not in json.dumps(result)


def test_manifest_digest_matches_oci_archive(capsys, tmp_path):
    amd = Image('x86_64')
    path = write_tar(tmp_path / 'one.tar', oci_entries([amd]))
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'), 'arches': ['x86_64'], 'compression': 'none',
                                       'images': [{'ref': REF, 'oci_archive': path}]})
    assert code == 0, result
    assert result['images'] == [{'ref': REF, 'digest': digest(amd.manifest()),
                                 'platforms': {'linux/amd64': digest(amd.manifest())}}]


# --------------------------------------------------------------------------- images from a spec file

def write_spec(path, images, arches=('x86_64', 'aarch64')):
    spec = {'name': 'shop', 'version': '1.0', 'arches': list(arches), 'artifacts': [], 'images': images, 'apps': []}
    path.write_text(json.dumps(spec))  # JSON is YAML
    return str(path)


def test_images_from_a_spec_file(capsys, tmp_path, archives):
    # paths relative to the spec file, as bundle_spec resolves them; the spec's arches apply
    spec = write_spec(tmp_path / 'spec.yml', [
        {'ref': REF, 'docker_archive': 'amd.tar', 'arch': 'x86_64'},
        {'ref': 'registry.ferry.local/demo/db:16', 'oci_archive': 'db.tar'}], arches=['x86_64'])
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'), 'spec': spec})
    assert code == 0, result
    assert result['added'] == [REF, 'registry.ferry.local/demo/db:16']
    assert [sorted(i['platforms']) for i in result['images']] == [['linux/amd64'], ['linux/amd64']]
    code, again = run_module(capsys, {'store': str(tmp_path / 'store'), 'spec': spec})
    assert code == 0 and again['changed'] is False and again['images'] == result['images']


def test_spec_registry_password_stays_in_the_module(capsys, tmp_path):
    port = free_port()
    source = '127.0.0.1:%d/demo/web:1.0' % port
    spec = write_spec(tmp_path / 'spec.yml', [
        {'ref': REF, 'registry': {'ref': source, 'username': 'u', 'password': 'Spec-only-s3cret'}}])
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'), 'spec': spec})
    assert code == 1
    assert 'cannot reach registry http://127.0.0.1:%d' % port in result['msg'] and source in result['msg']
    assert 'Spec-only-s3cret' not in json.dumps(result)


def test_spec_and_images_are_exclusive(capsys, tmp_path, archives):
    spec = write_spec(tmp_path / 'spec.yml', [{'ref': REF, 'docker_archive': 'amd.tar', 'arch': 'x86_64'}])
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'), 'spec': spec,
                                       'images': [{'ref': REF, 'docker_archive': archives['amd']}]})
    assert code == 1 and 'mutually exclusive' in result['msg']
    code, result = run_module(capsys, {'store': str(tmp_path / 'store')})
    assert code == 1 and 'one of the following is required: images, spec' in result['msg']
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'), 'spec': str(tmp_path / 'missing.yml')})
    assert code == 1 and 'missing.yml' in result['msg']


def test_default_compression_is_zstd_and_reruns_write_nothing(capsys, tmp_path, archives):
    args = args_for(tmp_path, archives)
    del args['compression']
    code, result = run_module(capsys, args)
    assert code == 0, result
    store = tmp_path / 'store'
    web = json.loads((store / 'blobs' / 'sha256' / result['images'][1]['platforms']['linux/amd64'][7:]).read_text())
    assert [d['mediaType'] for d in web['layers']] == ['application/vnd.oci.image.layer.v1.tar+zstd']
    assert result['bytes_skipped'] == web['layers'][0]['size']  # the base layer, shared by both arches
    # the db oci-archive (a gzip tar) holds plain tar layers: compressed, so its manifests are rewritten
    db = Image('x86_64', layers=[layer({'db': b'1'})])
    assert result['images'][0]['platforms']['linux/amd64'] != digest(db.manifest())
    files = store_files(store)
    code, again = run_module(capsys, args)
    assert (code, again['changed'], again['bytes_written'], again['images']) == (0, False, 0, result['images'])
    assert store_files(store) == files


def test_spec_compression_is_used_and_checked(capsys, tmp_path, archives):
    spec = write_spec(tmp_path / 'spec.yml', [{'ref': REF, 'docker_archive': 'amd.tar', 'arch': 'x86_64'}],
                      arches=['x86_64'])
    data = json.loads((tmp_path / 'spec.yml').read_text())
    (tmp_path / 'spec.yml').write_text(json.dumps(dict(data, images_compression='gzip')))
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'), 'spec': spec, 'compression': 'none'})
    assert code == 0, result
    manifest = json.loads((tmp_path / 'store' / 'blobs' / 'sha256' /
                           result['images'][0]['platforms']['linux/amd64'][7:]).read_text())
    assert [d['mediaType'] for d in manifest['layers']] == ['application/vnd.oci.image.layer.v1.tar+gzip']
    (tmp_path / 'spec.yml').write_text(json.dumps(dict(data, images_compression='brotli')))
    code, result = run_module(capsys, {'store': str(tmp_path / 'store'), 'spec': spec})
    assert code == 1 and result['msg'].startswith("images_compression: unknown layer compression 'brotli'")
