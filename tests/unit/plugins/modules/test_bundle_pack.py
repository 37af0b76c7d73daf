# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import os

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pack import unpack
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.verify import verify_bundle
from ansible_collections.ferry.airgap.plugins.module_utils._digest import sha256_file
from ansible_collections.ferry.airgap.plugins.modules import bundle_pack
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import finish, make_bundle, siblings, tree
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module


def test_chunked_pack_rerun_and_unpack(tmp_path, capsys):
    root = make_bundle(tmp_path / 'shop-1.0')
    manifest = finish(root)
    tar = str(tmp_path / 'shop-1.0.tar')
    a = {'path': root, 'dest': tar, 'chunk_size': '8K'}
    result, code = run_module(bundle_pack, a, capsys, check_mode=True)
    assert code == 0 and result['changed'] and os.listdir(str(tmp_path)) == ['shop-1.0']
    result, code = run_module(bundle_pack, a, capsys)
    assert code == 0 and result['changed'] and len(result['parts']) > 1
    assert all(p['size'] <= 8192 for p in result['parts'])
    assert json.loads(open(tar + '.parts.json').read())['parts'] == result['parts']
    result2, code = run_module(bundle_pack, a, capsys)
    assert code == 0 and result2['changed'] is False and result2['sha256'] == result['sha256']
    result3, code = run_module(bundle_pack, a, capsys, check_mode=True)
    assert result3['changed'] is False
    unpack(tar + '.000', str(tmp_path / 'out'))
    assert verify_bundle(str(tmp_path / 'out'), manifest) == [] and tree(tmp_path / 'out') == tree(root)
    assert siblings(tar) == []


def test_single_tar_and_bad_input(tmp_path, capsys):
    root = make_bundle(tmp_path / 'b')
    result, code = run_module(bundle_pack, {'path': root, 'dest': str(tmp_path / 'b.tar')}, capsys)
    assert code == 1 and 'manifest.json' in result['msg'] and not os.path.exists(str(tmp_path / 'b.tar'))
    finish(root)
    result, code = run_module(bundle_pack, {'path': root, 'dest': str(tmp_path / 'b.tar'), 'chunk_size': 'lots'},
                              capsys)
    assert code == 1 and 'chunk_size' in result['msg']
    result, code = run_module(bundle_pack, {'path': root, 'dest': str(tmp_path / 'b.tar')}, capsys)
    assert code == 0 and result['changed'] and result['parts'] is None
    assert sha256_file(str(tmp_path / 'b.tar')) == (result['sha256'], result['size'])
