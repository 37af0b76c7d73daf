# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test hosts' capability list lives in tests/images/testhost-caps.txt; whoever repeats it must agree."""

import glob
import os

import pytest
import yaml

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), '..', '..'))
CAPS_FILE = os.path.join(ROOT, 'tests', 'images', 'testhost-caps.txt')
SCENARIOS = sorted(glob.glob(os.path.join(ROOT, 'extensions', 'molecule', '*', 'molecule.yml')))


def read_caps():
    with open(CAPS_FILE) as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith('#')]


def test_the_list_itself():
    caps = read_caps()
    assert len(caps) == len(set(caps)), 'duplicates in %s' % CAPS_FILE
    assert 'SYS_RESOURCE' not in caps and 'CAP_SYS_RESOURCE' not in caps
    assert all(cap.isupper() and not cap.startswith('CAP_') for cap in caps), caps


def test_there_are_scenarios():
    assert SCENARIOS


@pytest.mark.parametrize('path', SCENARIOS, ids=[os.path.basename(os.path.dirname(p)) for p in SCENARIOS])
def test_molecule_scenario_capabilities_match_the_list(path):
    with open(path) as fh:
        scenario = yaml.safe_load(fh)
    caps = read_caps()
    for platform in scenario['platforms']:
        got = platform.get('capabilities')
        assert got == caps, '%s: platform %s has capabilities %s; tests/images/testhost-caps.txt has %s (missing %s, extra %s)' % (
            os.path.relpath(path, ROOT), platform['name'], got, caps,
            sorted(set(caps) - set(got or [])), sorted(set(got or []) - set(caps)))


@pytest.mark.parametrize('rel', ['tests/demo.sh', 'bench/_bench.py'])
def test_scripts_read_the_file(rel):
    with open(os.path.join(ROOT, rel)) as fh:
        text = fh.read()
    assert 'testhost-caps.txt' in text, '%s should read tests/images/testhost-caps.txt' % rel
    for cap in ('DAC_READ_SEARCH', 'BLOCK_SUSPEND', 'WAKE_ALARM'):
        assert cap not in text, '%s repeats the capability list (%s): read tests/images/testhost-caps.txt' % (rel, cap)
