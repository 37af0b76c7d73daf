# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_platform: the one table of Ferry arches, OCI platforms and uname names."""

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils import _platform as P


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
