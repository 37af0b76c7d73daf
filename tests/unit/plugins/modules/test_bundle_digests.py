# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import os

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import MANIFEST
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import digest_inventory
from ansible_collections.ferry.airgap.plugins.modules import bundle_digests
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import finish, make_bundle
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.modules import run_module


def test_export_and_rerun(tmp_path, capsys):
    root = make_bundle(tmp_path / 'b')
    manifest = finish(root)
    dest = str(tmp_path / 'site.digests.json')
    result, code = run_module(bundle_digests, {'path': root, 'dest': dest}, capsys, check_mode=True)
    assert code == 0 and result['changed'] and not os.path.exists(dest)
    result, code = run_module(bundle_digests, {'path': root, 'dest': dest}, capsys)
    assert code == 0 and result['changed']
    data = json.loads(open(dest).read())
    assert data['sha256'] == sorted(set(e['sha256'] for e in manifest['files'].values()))
    assert data['manifest_sha256'] == result['manifest_sha256'] == digest_inventory(root)['manifest_sha256']
    assert result['digests'] == len(data['sha256'])
    result, code = run_module(bundle_digests, {'path': os.path.join(root, MANIFEST), 'dest': dest}, capsys)
    assert code == 0 and result['changed'] is False


def test_no_manifest_fails(tmp_path, capsys):
    result, code = run_module(bundle_digests, {'path': str(tmp_path), 'dest': str(tmp_path / 'x.json')}, capsys)
    assert code == 1 and 'manifest.json' in result['msg'] and not os.path.exists(str(tmp_path / 'x.json'))
