# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import os

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import MANIFEST, RESERVED, SIGNATURE
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import digest_inventory
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import read_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import verify_signature
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.verify import verify_bundle
from ansible_collections.ferry.airgap.plugins.module_utils._digest import pretty_json
from ansible_collections.ferry.airgap.plugins.module_utils._fs import atomic_write
from ansible_collections.ferry.airgap.plugins.modules import bundle_delta
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import (
    add_blob, finish, make_bundle, siblings, tree)
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module


def versions(tmp_path, keys):
    v1 = make_bundle(tmp_path / 'shop-1.0')
    finish(v1, key=keys['good'])
    v2 = make_bundle(tmp_path / 'shop-2.0', version='2.0', app_text='replicas: 3\n')
    add_blob(v2, b'fresh layer')
    return v1, v2, finish(v2, '2.0', key=keys['good'])


def test_delta_from_inventory_signed_and_rerun(tmp_path, capsys, keys):
    v1, v2, full = versions(tmp_path, keys)
    inv = str(tmp_path / 'site.json')
    atomic_write(inv, pretty_json(digest_inventory(v1)))
    dest = str(tmp_path / 'delta')
    a = {'path': v2, 'base': inv, 'dest': dest, 'key': keys['good']}
    result, code = run_module(bundle_delta, a, capsys, check_mode=True)
    assert code == 0 and result['changed'] and not os.path.exists(dest)
    result, code = run_module(bundle_delta, a, capsys)
    assert code == 0 and result['changed'] and result['signed']
    assert result['files_total'] == len(full['files']) and 0 < result['files_shipped'] < result['files_total']
    assert result['base']['version'] == '1.0'
    delta, _raw = read_manifest(dest)
    assert sorted(set(tree(dest)) - set(RESERVED)) == delta['delta']['present']
    assert result['bytes_shipped'] == sum(full['files'][r]['size'] for r in delta['delta']['present'])
    verify_signature(None, os.path.join(dest, MANIFEST), keys['allowed'], keys['identity'])
    result, code = run_module(bundle_delta, a, capsys)
    assert code == 0 and result['changed'] is False
    # same delta from the base directory
    result, code = run_module(bundle_delta, dict(a, base=v1, dest=str(tmp_path / 'delta2')), capsys)
    assert code == 0 and tree(tmp_path / 'delta2') == tree(dest)
    # a damaged delta file is rebuilt
    os.unlink(os.path.join(dest, delta['delta']['present'][0]))
    result, code = run_module(bundle_delta, a, capsys)
    assert code == 0 and result['changed'] and verify_bundle(dest, delta, partial=True) == []
    assert siblings(dest) == []


def test_unsigned_and_bad_base(tmp_path, capsys, keys):
    v1, v2, _full = versions(tmp_path, keys)
    dest = str(tmp_path / 'delta')
    result, code = run_module(bundle_delta, {'path': v2, 'base': v1, 'dest': dest}, capsys)
    assert code == 0 and result['signed'] is False and not os.path.exists(os.path.join(dest, SIGNATURE))
    bad = tmp_path / 'inv.json'
    bad.write_text('{"name": "shop", "version": "1", "manifest_sha256": "xyz", "sha256": []}')
    result, code = run_module(bundle_delta, {'path': v2, 'base': str(bad), 'dest': str(tmp_path / 'd2')}, capsys)
    assert code == 1 and 'manifest_sha256' in result['msg'] and "'xyz'" in result['msg']
    assert not os.path.exists(str(tmp_path / 'd2'))
