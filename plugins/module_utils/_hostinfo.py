# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read what Ferry needs to know about a host from /proc, /sys and /etc.

Pure parsing functions take text and return data, so they are tested without a
host; the ``read_*`` functions only open files. Standard library only: this runs
on target hosts with Python 3.6+.
"""

import os
import platform
import re
import socket
import sys
import time

from ansible_collections.ferry.airgap.plugins.module_utils._platform import normalize_arch

# os-release ID -> (family Ferry uses, how Ferry treats it)
#   family: which packaging conventions, firewall and SELinux defaults apply.
#   treatment: 'supported' = tested on real hosts in CI, 'emulated' = only
#   detection is tested (RPM systems cannot be built on the test bed).
OS_TABLE = {
    'debian': ('debian', 'supported'),
    'ubuntu': ('debian', 'supported'),
    'kylin': ('redhat', 'emulated'),
    'openeuler': ('redhat', 'emulated'),
    'centos': ('redhat', 'emulated'),
    'rocky': ('redhat', 'emulated'),
    'rhel': ('redhat', 'emulated'),
    'almalinux': ('redhat', 'emulated'),
    'anolis': ('redhat', 'emulated'),
    'uos': (None, 'emulated'),  # UOS 20 exists in deb (1050a) and rpm (1050e) editions
}
VENDOR_RELEASE_FILES = ('kylin-release', 'openEuler-release', 'centos-release',
                        'redhat-release', 'rocky-release', 'uos-release')

_PROC_NET_LISTEN = {'tcp': '0A', 'udp': '07'}  # TCP_LISTEN; UDP sockets sit "closed" (07) when bound


def parse_os_release(text):
    """Parse os-release(5) text into a dict of upper-case keys to unquoted values."""
    result = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#') or '=' not in line:
            continue
        key, value = line.split('=', 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]
        result[key.strip()] = value.replace('\\"', '"').replace('\\$', '$')
    return result


def el_release(os_info):
    """The Enterprise Linux release whose RPMs fit this OS (``el7``, ``el8``, ``el9``); ``''`` outside the redhat family.

    ``os_info``: :func:`classify_os`'s dict (``family``, ``version``). The rule of k3s's install.sh when it
    picks its SELinux policy RPM: VERSION_ID 7 is el7; 8 and Kylin's V10 are el8; anything else (Rocky 9,
    openEuler 22.03, UOS 20) el9. Ferry names the bundle's policy artifacts by it (``k3s-selinux-el8``).
    """
    if (os_info or {}).get('family') != 'redhat':
        return ''
    major = str(os_info.get('version') or '').split('.', maxsplit=1)[0].upper()
    if major == '7':
        return 'el7'
    if major in ('8', 'V10'):
        return 'el8'
    return 'el9'


def classify_os(os_release, release_files=None, pkg_tools=None):
    """Map os-release data to Ferry's view of the OS.

    ``release_files`` maps vendor release file names to their first line;
    ``pkg_tools`` lists which of dpkg/rpm exist (decides UOS's family).
    """
    release_files = release_files or {}
    pkg_tools = pkg_tools or []
    os_id = os_release.get('ID', '').lower()
    like = os_release.get('ID_LIKE', '').lower().split()
    family, treatment = OS_TABLE.get(os_id, (None, 'unknown'))
    if family is None:
        for candidate in like:
            if candidate in OS_TABLE and OS_TABLE[candidate][0]:
                family = OS_TABLE[candidate][0]
                break
    if family is None:
        if 'rpm' in pkg_tools and 'dpkg' not in pkg_tools:
            family = 'redhat'
        elif 'dpkg' in pkg_tools:
            family = 'debian'
        else:
            family = 'unknown'
    info = {
        'id': os_id or 'unknown',
        'name': os_release.get('NAME', 'unknown'),
        'version': os_release.get('VERSION_ID', ''),
        'pretty_name': os_release.get('PRETTY_NAME', os_release.get('NAME', 'unknown')),
        'family': family,
        'treatment': treatment,
        'release_files': release_files,
    }
    info['el'] = el_release(info)
    return info


def kernel_version_tuple(release):
    """'5.10.0-136.12.0.86.oe2203.aarch64' -> (5, 10, 0)."""
    match = re.match(r'(\d+)(?:\.(\d+))?(?:\.(\d+))?', release or '')
    if not match:
        return (0, 0, 0)
    return tuple(int(part or 0) for part in match.groups())


def parse_proc_net(text, proto):
    """Listening sockets from /proc/net/{tcp,tcp6,udp,udp6} text: [{'port', 'address', 'inode'}]."""
    state_wanted = _PROC_NET_LISTEN[proto]
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != state_wanted:
            continue
        address, port = fields[1].rsplit(':', 1)
        if proto == 'udp' and fields[2].rsplit(':', 1)[1] != '0000':
            continue  # connected UDP socket, not a bound server
        sockets.append({'proto': proto, 'port': int(port, 16), 'address': address, 'inode': int(fields[9])})
    return sockets


def parse_meminfo(text):
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(':'):
            values[parts[0][:-1]] = int(parts[1])
    return {'total_mb': values.get('MemTotal', 0) // 1024, 'swap_total_mb': values.get('SwapTotal', 0) // 1024}


def parse_swaps(text):
    return [line.split()[0] for line in text.splitlines()[1:] if line.strip()]


def parse_selinux_config(text):
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('SELINUX='):
            return line.split('=', 1)[1].strip().lower()
    return None


def module_state(name, filesystems_text, loaded, modules_index):
    """'loaded' if in the running kernel, 'loadable' if a module file exists, else 'missing'."""
    if name == 'overlay' and re.search(r'\boverlay\b', filesystems_text):
        return 'loaded'
    if name in loaded:
        return 'loaded'
    if re.search(r'(^|/)%s\.ko' % re.escape(name), modules_index, re.M):
        return 'loadable'
    return 'missing'


def _read(path, default=''):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return default


def _which(name):
    for directory in os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin').split(os.pathsep) + ['/usr/sbin', '/sbin']:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def read_os(etc='/etc'):
    text = _read(os.path.join(etc, 'os-release')) or _read('/usr/lib/os-release')
    release_files = {}
    for name in VENDOR_RELEASE_FILES:
        content = _read(os.path.join(etc, name)).strip()
        if content:
            release_files[name] = content.splitlines()[0]
    tools = [tool for tool in ('dpkg', 'rpm') if _which(tool)]
    return classify_os(parse_os_release(text), release_files, tools)


def read_kernel():
    release = platform.release()
    filesystems = _read('/proc/filesystems')
    loaded = set(os.listdir('/sys/module')) if os.path.isdir('/sys/module') else set()
    modules_index = _read('/lib/modules/%s/modules.dep' % release) + _read('/lib/modules/%s/modules.builtin' % release)
    if os.path.isfile('/sys/fs/cgroup/cgroup.controllers'):
        cgroup = 'v2'
    elif os.path.isdir('/sys/fs/cgroup/memory') or os.path.isdir('/sys/fs/cgroup/cpu,cpuacct'):
        cgroup = 'v1'
    else:
        cgroup = 'none'
    return {
        'release': release,
        'version': '.'.join(str(part) for part in kernel_version_tuple(release)),
        'overlay': module_state('overlay', filesystems, loaded, modules_index),
        'br_netfilter': module_state('br_netfilter', filesystems, loaded, modules_index),
        'cgroup': cgroup,
        'ip_forward': _read('/proc/sys/net/ipv4/ip_forward', '0').strip() == '1',
    }


def read_selinux():
    enforce = _read('/sys/fs/selinux/enforce').strip()
    if enforce:
        current = 'enforcing' if enforce == '1' else 'permissive'
    else:
        current = 'disabled'
    return {'current': current, 'configured': parse_selinux_config(_read('/etc/selinux/config'))}


def socket_owners():
    """Map socket inode -> process name, as far as /proc lets us see."""
    owners = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        fd_dir = '/proc/%s/fd' % pid
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        name = _read('/proc/%s/comm' % pid).strip()
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith('socket:['):
                owners[int(target[8:-1])] = name
    return owners


def read_listeners():
    """Listening TCP ports and bound UDP ports with the owning process where visible."""
    sockets = []
    for proto in ('tcp', 'udp'):
        for suffix in ('', '6'):
            sockets.extend(parse_proc_net(_read('/proc/net/%s%s' % (proto, suffix)), proto))
    owners = socket_owners()
    seen = {}
    for item in sockets:
        key = (item['proto'], item['port'])
        if key not in seen:
            seen[key] = {'proto': item['proto'], 'port': item['port'], 'process': owners.get(item['inode'], '')}
    return sorted(seen.values(), key=lambda s: (s['proto'], s['port']))


def read_disk(path):
    """Free space of the filesystem that holds (or will hold) ``path``."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    stat = os.statvfs(probe)
    return {
        'path': path,
        'existing': probe,
        'device': os.stat(probe).st_dev,
        'free_mb': stat.f_bavail * stat.f_frsize // (1024 * 1024),
        'total_mb': stat.f_blocks * stat.f_frsize // (1024 * 1024),
    }


def cpu_count():
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def gather(paths):
    """Everything the preflight role checks, as one dict."""
    meminfo = parse_meminfo(_read('/proc/meminfo'))
    return {
        'hostname': socket.gethostname(),
        'arch': normalize_arch(platform.machine()),
        'os': read_os(),
        'kernel': read_kernel(),
        'selinux': read_selinux(),
        'swap': {'total_mb': meminfo['swap_total_mb'], 'devices': parse_swaps(_read('/proc/swaps'))},
        'memory_mb': meminfo['total_mb'],
        'cpus': cpu_count(),
        'disks': [read_disk(path) for path in paths],
        'listeners': read_listeners(),
        'python': {'version': '%d.%d.%d' % sys.version_info[:3], 'executable': sys.executable},
        'systemd': os.path.isdir('/run/systemd/system'),
        'epoch': time.time(),
    }
