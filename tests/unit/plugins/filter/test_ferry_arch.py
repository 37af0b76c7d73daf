# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ferry_arch filter: every alias the platform table knows, Ferry's own names, unknown names."""

import pytest
from ansible_collections.ferry.airgap.plugins.filter.ferry_arch import FilterModule, ferry_arch
from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES


@pytest.mark.parametrize('machine, arch', [
    ('x86_64', 'x86_64'), ('amd64', 'x86_64'), ('x64', 'x86_64'), ('x86-64', 'x86_64'), ('AMD64', 'x86_64'),
    ('aarch64', 'aarch64'), ('arm64', 'aarch64'), ('armv8', 'aarch64'), ('arm64v8', 'aarch64'), ('ARM64', 'aarch64'),
])
def test_aliases_map_to_ferry_names(machine, arch):
    assert ferry_arch(machine) == arch


def test_ferry_names_are_fixed_points():
    for arch in ARCHES:
        assert ferry_arch(arch) == arch
        assert ferry_arch(ferry_arch(arch)) == arch


@pytest.mark.parametrize('machine, expected', [('ppc64le', 'ppc64le'), ('S390X', 's390x'), ('', ''), (None, '')])
def test_unknown_and_empty_come_back_for_the_caller_to_report(machine, expected):
    assert ferry_arch(machine) == expected


def test_registered_under_its_name():
    assert FilterModule().filters() == {'ferry_arch': ferry_arch}
