# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one platform table: Ferry arch names <-> OCI platforms <-> what uname and Ansible call them.

A leaf: standard library only, no Ferry imports. Ferry names a CPU the way the kernel does
(``x86_64``, ``aarch64``); OCI and containerd say ``linux/amd64`` and ``linux/arm64`` (variant
``v8``, which is arm64's default and therefore dropped from keys, as containerd's matcher does).
Every place that turns one name into another uses this module.
"""

# Ferry arch -> OCI architecture, OCI variant written into new platforms, names uname/dpkg/Go use
_TABLE = (
    ('x86_64', 'amd64', '', ('x86_64', 'amd64', 'x64', 'x86-64')),
    ('aarch64', 'arm64', 'v8', ('aarch64', 'arm64', 'armv8', 'arm64v8')),
)
ARCHES = tuple(row[0] for row in _TABLE)
OCI_ARCH = dict((row[0], row[1]) for row in _TABLE)
OCI_VARIANT = dict((row[0], row[2]) for row in _TABLE)
_ALIASES = dict((alias, row[0]) for row in _TABLE for alias in row[3])


class PlatformError(ValueError):
    """An arch or platform Ferry does not know or cannot parse."""


def normalize_arch(machine):
    """Ferry's name for ``machine`` (``uname -m``, Ansible's ``ansible_architecture``, dpkg or Go names).

    Unknown names come back unchanged, so a caller can report them.
    """
    machine = (machine or '').lower()
    return _ALIASES.get(machine, machine)


def oci_platform(arch):
    """The OCI platform dict of a Ferry arch (``{'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'}``)."""
    if arch not in OCI_ARCH:
        raise PlatformError("unsupported arch '%s' (supported: %s)" % (arch, ', '.join(ARCHES)))
    platform = {'os': 'linux', 'architecture': OCI_ARCH[arch]}
    if OCI_VARIANT[arch]:
        platform['variant'] = OCI_VARIANT[arch]
    return platform


def arch_platform_key(arch):
    """``linux/amd64`` for x86_64, ``linux/arm64`` for aarch64; PlatformError for other arches."""
    return platform_key(oci_platform(arch))


def normalize_platform(platform):
    """``(os, arch, variant)`` of a platform dict or ``os/arch[/variant]`` string, normalised as containerd does.

    Equal tuples match under containerd's strict platform matcher (``ctr images import --platform``):
    arm64's v8 variant is the default (dropped), arm defaults to v7, x86_64/aarch64 are amd64/arm64.
    """
    if isinstance(platform, dict):
        os_name = platform.get('os') or ''
        arch = platform.get('architecture') or ''
        variant = platform.get('variant') or ''
    else:
        parts = (platform or '').split('/')
        if len(parts) not in (2, 3) or not all(parts):
            raise PlatformError("invalid platform '%s' (expected os/arch[/variant], e.g. linux/amd64)" % platform)
        os_name, arch, variant = parts[0], parts[1], parts[2] if len(parts) == 3 else ''
    os_name, arch, variant = os_name.lower(), arch.lower(), variant.lower()
    if os_name == 'macos':
        os_name = 'darwin'
    if arch == 'i386':
        arch, variant = '386', ''
    elif arch in ('x86_64', 'x86-64', 'amd64'):
        arch = 'amd64'
        variant = '' if variant == 'v1' else variant
    elif arch in ('aarch64', 'arm64'):
        arch = 'arm64'
        variant = '' if variant in ('8', 'v8') else variant
    elif arch == 'armhf':
        arch, variant = 'arm', 'v7'
    elif arch == 'armel':
        arch, variant = 'arm', 'v6'
    elif arch == 'arm':
        variant = {'': 'v7', '7': 'v7', '5': 'v5', '6': 'v6', '8': 'v8'}.get(variant, variant)
    return os_name, arch, variant


def format_platform(normalized):
    """``os/arch[/variant]`` of a :func:`normalize_platform` tuple."""
    return '/'.join(part for part in normalized if part)


def platform_key(platform):
    """The one key of an OCI platform dict: ``os/arch[/variant]``, arm64's default v8 dropped.

    ``linux/arm64/v8`` and ``linux/arm64`` are the same platform and get the same key everywhere
    (the store, the bundle manifest, the loader). Missing parts read ``unknown``.
    """
    platform = platform if isinstance(platform, dict) else {}
    os_name = platform.get('os') or 'unknown'
    arch = platform.get('architecture') or 'unknown'
    variant = platform.get('variant') or ''
    if arch == 'arm64' and variant in ('v8', '8'):
        variant = ''
    return '/'.join(part for part in (os_name, arch, variant) if part)


def platform_arch(platform):
    """Ferry arch (x86_64/aarch64) of an OCI platform dict, or None for anything else."""
    platform = platform if isinstance(platform, dict) else {}
    if platform.get('os') != 'linux':
        return None
    for arch, oci_arch in OCI_ARCH.items():
        if platform.get('architecture') == oci_arch:
            return arch
    return None


# ELF: what a binary says it runs on. e_ident[EI_DATA] (offset 5) gives the byte order of e_machine,
# a 2-byte field at offset 18 (the same offset in 32- and 64-bit files).
ELF_MAGIC = b'\x7fELF'
ELF_HEAD_SIZE = 20
ELF_MACHINES = {62: 'x86_64', 183: 'aarch64'}  # EM_X86_64, EM_AARCH64: Ferry's arches
_ELF_OTHER_MACHINES = {3: 'i386', 8: 'mips', 20: 'ppc', 21: 'ppc64', 22: 's390x', 40: 'arm', 243: 'riscv64',
                       258: 'loongarch64'}


def elf_arch(head):
    """``(arch, e_machine)`` of a file starting with ``head`` (its first :data:`ELF_HEAD_SIZE` bytes or more).

    ``None`` when ``head`` does not start with the ELF magic (a tarball, an RPM, a script). ``arch`` is
    Ferry's name (``x86_64``, ``aarch64``), another CPU's usual name (``arm``, ``i386``...) or
    ``e_machine <n>``. Raises :class:`PlatformError` for an ELF header too short to hold e_machine or with
    an invalid byte order.
    """
    head = bytes(head[:ELF_HEAD_SIZE])
    if not head.startswith(ELF_MAGIC):
        return None
    if len(head) < ELF_HEAD_SIZE:
        raise PlatformError('ELF header truncated: %d bytes, e_machine needs %d' % (len(head), ELF_HEAD_SIZE))
    order = {1: 'little', 2: 'big'}.get(head[5])
    if order is None:
        raise PlatformError('invalid ELF header: byte order (EI_DATA) %d is neither 1 (little) nor 2 (big)' % head[5])
    machine = int.from_bytes(head[18:20], order)
    name = ELF_MACHINES.get(machine) or _ELF_OTHER_MACHINES.get(machine) or 'e_machine %d' % machine
    return name, machine
