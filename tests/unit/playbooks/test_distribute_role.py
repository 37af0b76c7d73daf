# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role distribute run for real with ansible-playbook -vvv on this machine (deploy node and target: localhost)."""

import os
import re
import sys

import pytest
import yaml

from ansible_collections.ferry.airgap.tests.support.ferry_run import ansible
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import make_bundle
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.net import free_port

pytestmark = pytest.mark.integration

PULL = "Pull this host's files into"
SERVE = 'Start the bundle server on'


def test_token_stays_out_of_the_url_and_the_server_binds_to_the_site_address(tmp_path):
    """The serve token reaches bundle_pull as its no_log option, so no -vvv output shows it; the server
    listens on the address the hosts reach it at, not on every interface."""
    manifest = make_bundle(tmp_path / 'bundle', arches=('x86_64',), big=4096)
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    port = free_port()
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump({'all': {
        'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable},
        'children': {'deploy': {'hosts': {'localhost': {}}}, 'standalone': {'hosts': {'localhost': {}}}}}}))
    play = tmp_path / 'play.yml'
    play.write_text(yaml.safe_dump([{
        'name': 'Distribute', 'hosts': 'standalone', 'gather_facts': False,
        'roles': [{'role': 'ferry.airgap.distribute', 'vars': {
            'distribute_bundle_dir': str(tmp_path / 'bundle'), 'distribute_dest': str(tmp_path / 'mirror'),
            'distribute_arch': 'x86_64', 'distribute_server_address': '127.0.0.1', 'distribute_port': port,
            'distribute_run_dir': str(run_dir)}}]}]))
    run = ansible(['-i', str(inventory), str(play), '-vvv'], timeout=300)
    assert run.rc == 0, run.tail()
    pulled = run.task_results(PULL)['localhost']
    assert pulled['changed'] is True and set(pulled['fetched']) <= set(manifest['files']) and pulled['fetched']
    assert pulled['invocation']['module_args']['url'] == 'http://127.0.0.1:%d' % port
    assert pulled['invocation']['module_args']['token'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    served = run.task_results(SERVE)['localhost']
    assert served['url'] == 'http://127.0.0.1:%d' % port and served['invocation']['module_args']['address'] == '127.0.0.1'
    # no URL of the server in any output carries a path (the token would be its first component)
    output = run.stdout + run.stderr
    assert re.findall(r'127\.0\.0\.1:%d/[^\s"\']*' % port, output) == []
    assert os.listdir(str(run_dir)) == []
