# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import os
import subprocess

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import KIT_SIG, KIT_SUMS, MANIFEST, SIGNATURE
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.kit import kit_sums
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import read_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import verify_signature
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.verify import verify_bundle
from ansible_collections.ferry.airgap.plugins.module_utils._digest import sha256_bytes
from ansible_collections.ferry.airgap.plugins.modules import bundle_manifest
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import make_bundle, write
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module


def args(root, **kw):
    a = {'path': root, 'name': 'shop', 'version': '1.0', 'arches': ['x86_64']}
    a.update(kw)
    return a


def test_write_sign_verify_and_rerun_unchanged(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'b')
    result, code = run_module(bundle_manifest, args(root), capsys, check_mode=True)
    assert code == 0 and result['changed'] and not os.path.exists(os.path.join(root, MANIFEST))

    result, code = run_module(bundle_manifest, args(root, key=keys['good']), capsys)
    assert code == 0 and result['changed'] and result['signed']
    manifest, raw = read_manifest(root)
    assert result['manifest_sha256'] == sha256_bytes(raw) and result['files'] == len(manifest['files'])
    assert verify_bundle(root, manifest) == []
    verify_signature(None, os.path.join(root, MANIFEST), keys['allowed'], keys['identity'])

    result, code = run_module(bundle_manifest, args(root, key=keys['good']), capsys)
    assert code == 0 and result['changed'] is False
    assert read_manifest(root)[1] == raw


def test_content_change_is_a_change_and_drops_stale_signature(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'b')
    run_module(bundle_manifest, args(root, key=keys['good']), capsys)
    write(os.path.join(root, 'install.yml'), '- hosts: none\n')
    result, code = run_module(bundle_manifest, args(root), capsys)
    assert code == 0 and result['changed'] and not result['signed']
    assert not os.path.exists(os.path.join(root, SIGNATURE))
    assert verify_bundle(root, read_manifest(root)[0]) == []


def test_created_and_images_are_recorded(tmp_path, capsys):
    root = make_bundle(tmp_path / 'b')
    images = [{'ref': 'x', 'digest': 'sha256:' + 'a' * 64, 'platforms': {}}]
    result, code = run_module(bundle_manifest, args(root, created='2024-01-01T00:00:00Z', images=images), capsys)
    manifest = json.loads(open(os.path.join(root, MANIFEST)).read())
    assert code == 0 and manifest['created'] == '2024-01-01T00:00:00Z' and manifest['images'] == images


def test_missing_dir_and_unknown_key_file_fail(tmp_path, capsys):
    result, code = run_module(bundle_manifest, args(str(tmp_path / 'nope')), capsys)
    assert code == 1 and 'does not exist' in result['msg']
    root = make_bundle(tmp_path / 'b')
    result, code = run_module(bundle_manifest, args(root, key=str(tmp_path / 'nokey')), capsys)
    assert code == 1 and 'nokey' in result['msg'] and not os.path.exists(os.path.join(root, MANIFEST))


def test_kit_sums_written_signed_and_checkable_with_coreutils(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'b', extra={'bootstrap': '#!/bin/sh\n', 'install.yml': '---\n'})
    result, code = run_module(bundle_manifest, args(root, key=keys['good']), capsys)
    assert code == 0 and result['changed']
    manifest, _raw = read_manifest(root)
    with open(os.path.join(root, KIT_SUMS), 'rb') as fh:
        sums = fh.read()
    assert sums == kit_sums(manifest)
    listed = [line.split('  ', 1)[1] for line in sums.decode().splitlines()]
    assert 'bootstrap' in listed and 'install.yml' in listed
    assert not [rel for rel in listed if rel.split('/')[0] in ('images', 'artifacts', 'apps')]
    # what a site runs first: sha256sum and ssh-keygen, nothing of Ferry
    subprocess.run(['sha256sum', '--check', '--strict', '--quiet', KIT_SUMS], cwd=root, check=True)
    verify_signature(None, os.path.join(root, KIT_SUMS), keys['allowed'], keys['identity'])
    # without a key the next build drops both signatures once what they signed changes
    write(os.path.join(root, 'install.yml'), '--- # changed\n')
    result, code = run_module(bundle_manifest, args(root), capsys)
    assert code == 0 and result['changed'] and not result['signed']
    assert not os.path.exists(os.path.join(root, KIT_SIG)) and not os.path.exists(os.path.join(root, SIGNATURE))


def test_site_local_paths_are_refused_and_nothing_written(tmp_path, capsys, keys):
    root = make_bundle(tmp_path / 'b', extra={'.ferry-venv/bin/python': '#!/bin/sh\n'})
    result, code = run_module(bundle_manifest, args(root, key=keys['good']), capsys)
    assert code == 1 and '.ferry-venv/bin/python: a bundle must not carry site-local paths' in result['msg']
    assert not any(os.path.exists(os.path.join(root, n)) for n in (MANIFEST, SIGNATURE, KIT_SUMS, KIT_SIG))
