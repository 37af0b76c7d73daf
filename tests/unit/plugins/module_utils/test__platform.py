# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_platform: the one table of Ferry arches, OCI platforms and uname names."""

import platform
import sys

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils import _platform as P
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import EM_AARCH64, EM_X86_64, elf


@pytest.mark.parametrize('machine, expected', [
    ('x86_64', 'x86_64'), ('amd64', 'x86_64'), ('AMD64', 'x86_64'), ('x64', 'x86_64'),
    ('aarch64', 'aarch64'), ('arm64', 'aarch64'), ('armv8', 'aarch64'),
    ('ppc64le', 'ppc64le'), ('', ''), (None, ''),
])
def test_normalize_arch(machine, expected):
    assert P.normalize_arch(machine) == expected


def test_every_arch_round_trips_through_its_platform():
    for arch in P.ARCHES:
        platform = P.oci_platform(arch)
        assert P.platform_arch(platform) == arch
        assert P.normalize_arch(platform['architecture']) == arch
        assert P.arch_platform_key(arch) == P.platform_key(platform)


def test_arm64_v8_is_one_platform_with_one_key():
    """linux/arm64/v8 and linux/arm64 are the same platform: the store, the manifest and the loader agree."""
    with_variant = {'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'}
    short_variant = {'os': 'linux', 'architecture': 'arm64', 'variant': '8'}
    without = {'os': 'linux', 'architecture': 'arm64'}
    assert P.platform_key(with_variant) == P.platform_key(short_variant) == P.platform_key(without) == 'linux/arm64'
    assert P.arch_platform_key('aarch64') == 'linux/arm64'
    assert P.normalize_platform(with_variant) == P.normalize_platform('linux/arm64') == ('linux', 'arm64', '')
    assert P.oci_platform('aarch64') == with_variant


def test_other_variants_are_kept():
    assert P.platform_key({'os': 'linux', 'architecture': 'arm', 'variant': 'v7'}) == 'linux/arm/v7'
    assert P.platform_key({}) == 'unknown/unknown'
    assert P.platform_key(None) == 'unknown/unknown'
    assert P.platform_arch({'os': 'windows', 'architecture': 'amd64'}) is None
    assert P.platform_arch({'os': 'linux', 'architecture': 's390x'}) is None


@pytest.mark.parametrize('platform, expected', [
    ('linux/amd64', 'linux/amd64'), ('linux/x86_64/v1', 'linux/amd64'), ('linux/aarch64', 'linux/arm64'),
    ('linux/arm64/v8', 'linux/arm64'), ('linux/armhf', 'linux/arm/v7'), ('linux/arm', 'linux/arm/v7'),
    ('macos/amd64', 'darwin/amd64'), ('linux/i386', 'linux/386'),
])
def test_normalize_platform_as_containerd(platform, expected):
    assert P.format_platform(P.normalize_platform(platform)) == expected


@pytest.mark.parametrize('bad', ['amd64', 'linux', 'linux/', '/amd64', 'linux/arm64/v8/x', 'a/b/c/d', ''])
def test_malformed_platform_is_refused_with_an_example(bad):
    with pytest.raises(P.PlatformError, match="invalid platform .*expected os/arch"):
        P.normalize_platform(bad)


def test_unknown_arch_names_the_supported_ones():
    with pytest.raises(P.PlatformError, match="unsupported arch 'ppc64le' .*x86_64, aarch64"):
        P.arch_platform_key('ppc64le')


@pytest.mark.parametrize('head, expected', [
    (elf(EM_X86_64), ('x86_64', 62)),
    (elf(EM_AARCH64), ('aarch64', 183)),
    (elf(EM_AARCH64, 'big'), ('aarch64', 183)),   # e_machine read in the file's byte order
    (elf(40), ('arm', 40)),
    (elf(0x1234), ('e_machine 4660', 4660)),
    (elf(EM_X86_64)[:20], ('x86_64', 62)),       # exactly the 20 bytes the checks read
])
def test_elf_arch(head, expected):
    assert P.elf_arch(head) == expected


@pytest.mark.parametrize('head', [b'', b'\x1f\x8b\x08\x00', b'\xed\xab\xee\xdb\x03\x00', b'#!/bin/sh\n', b'\x7fEL'])
def test_elf_arch_of_other_files_is_none(head):
    """tar.gz, RPM (lead magic), a script, a too-short file: not ELF, not checked."""
    assert P.elf_arch(head) is None


def test_elf_arch_of_a_truncated_or_invalid_header_is_a_platform_error():
    with pytest.raises(P.PlatformError, match='ELF header truncated: 9 bytes, e_machine needs 20'):
        P.elf_arch(elf(EM_X86_64)[:9])
    with pytest.raises(P.PlatformError, match=r'byte order \(EI_DATA\) 0 is neither 1'):
        P.elf_arch(b'\x7fELF\x02\x00' + b'\0' * 20)


def test_elf_arch_of_this_machines_python():
    """A real binary: the interpreter running the tests is an ELF for this machine's CPU."""
    with open(sys.executable, 'rb') as f:
        head = f.read(P.ELF_HEAD_SIZE)
    assert P.elf_arch(head)[0] == P.normalize_arch(platform.machine())
