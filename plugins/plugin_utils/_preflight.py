# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight policy: turn every host's facts into one report for the inventory.

Runs on the controller (the filter plugin ``preflight_report`` calls ``evaluate``).
Input per host: the ``ferry_host`` facts (or the error that kept us from them),
the Python probe and the host's preflight settings; input for the inventory:
Ferry's groups. Output: a row per host, a column per check, and the lists of
failures, warnings and waivers.
"""

import re

from ansible_collections.ferry.airgap.plugins.module_utils._hostinfo import el_release
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import COMPRESSION_MIN_RUNTIME
from ansible_collections.ferry.airgap.plugins.module_utils._platform import PlatformError, arch_platform_key

CHECKS = ('python', 'arch', 'os', 'kernel', 'swap', 'selinux', 'runtime', 'disk', 'memory', 'cpu',
          'ports', 'hostname', 'clock', 'inventory')
FERRY_GROUPS = ('deploy', 'k3s_server', 'k3s_agent', 'standalone')
SITE_GROUPS = ('k3s_server', 'k3s_agent', 'standalone')  # hosts that load the bundle's images
KERNEL_FEATURES = ('overlay', 'br_netfilter', 'cgroup')
K3S_GROUPS = ('k3s_server', 'k3s_agent')
# Inventory problems that can be waived one by one (preflight_waive), like the kernel features.
EVEN_SERVERS = 'k3s_even_servers'
# SELinux policy packages a k3s host needs when SELinux is enforcing (roles/ferry: ferry_selinux_policy_packages).
SELINUX_POLICY_PACKAGES = ('container-selinux', 'k3s-selinux')
OK, WARN, FAIL, WAIVED, SKIP = 'ok', 'WARN', 'FAIL', 'waived', '-'
_RANK = {OK: 0, SKIP: 0, WAIVED: 1, WARN: 2, FAIL: 3}
_NODE_NAME = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')


def version_tuple(text):
    return tuple(int(part) for part in re.findall(r'\d+', str(text))[:3])


def _result(status, detail=''):
    return {'status': status, 'detail': detail}


def _worst(results):
    status = max((r['status'] for r in results), key=lambda s: _RANK[s]) if results else OK
    detail = '; '.join(r['detail'] for r in results if r['status'] in (WAIVED, WARN, FAIL) and r['detail'])
    if not detail:
        detail = '; '.join(r['detail'] for r in results if r['detail'])
    return _result(status, detail)


def host_roles(name, groups):
    return [group for group in FERRY_GROUPS if name in groups.get(group, [])]


def _merge_requirement(policy, key, roles):
    """Largest per-role requirement among the host's roles (e.g. cpu, memory_mb)."""
    per_role = policy.get('requirements', {})
    return max([per_role.get(role, {}).get(key, 0) for role in roles] or [0])


def check_python(probe, policy):
    if not probe or not probe.get('version'):
        return _result(FAIL, 'no python3 found (%s)' % (probe or {}).get('error', 'probe failed'))
    minimum = policy.get('python_min', '3.6')
    if version_tuple(probe['version']) < version_tuple(minimum):
        return _result(FAIL, 'python %s < %s needed by this Ansible' % (probe['version'], minimum))
    return _result(OK, probe['version'])


def check_arch(facts, policy):
    arch = facts['arch']
    supported = policy.get('arch_supported', ['x86_64', 'aarch64'])
    if arch not in supported:
        return _result(FAIL, 'CPU architecture %s is not supported (supported: %s)' % (arch, ', '.join(supported)))
    available = policy.get('arch_available', supported)
    if arch not in available:
        return _result(FAIL, 'the bundle carries nothing for %s (it has: %s)' % (arch, ', '.join(available) or 'none'))
    return _result(OK, arch)


def check_os(facts, policy):
    info = facts['os']
    label = '%s %s' % (info['id'], info['version'])
    if info['treatment'] == 'unknown':
        return _result(WARN, 'unknown OS %r: treated as %s family' % (info['pretty_name'], info['family']))
    return _result(OK, '%s (%s, %s)' % (label.strip(), info['family'], info['treatment']))


def check_kernel(facts, policy, roles):
    """Kernel version and the features containerd and k3s need; each feature can be waived by its name."""
    kernel = facts['kernel']
    waive = policy.get('waive', [])
    results = []
    minimum = policy.get('kernel_min', '3.10')
    if version_tuple(kernel['version']) < version_tuple(minimum):
        results.append(_result(FAIL, 'kernel %s < %s' % (kernel['release'], minimum)))
    else:
        results.append(_result(OK, kernel['version']))
    problems = {}
    if kernel['overlay'] == 'missing':
        problems['overlay'] = 'overlay filesystem unavailable'
    if kernel['cgroup'] == 'none':
        problems['cgroup'] = 'no cgroup hierarchy mounted'
    if set(roles) & {'k3s_server', 'k3s_agent'} and kernel['br_netfilter'] == 'missing':
        problems['br_netfilter'] = 'br_netfilter module unavailable (needed by k3s)'
    for feature in KERNEL_FEATURES:
        if feature in problems:
            results.append(_result(WAIVED if feature in waive else FAIL, problems[feature]))
    results.append(_result(OK, 'cgroup %s%s' % (kernel['cgroup'], '' if kernel['ip_forward'] else ', ip_forward off (set at install)')))
    return _worst(results)


def check_swap(facts, policy, roles):
    swap = facts['swap']['total_mb']
    if swap and set(roles) & {'k3s_server', 'k3s_agent'}:
        return _result(WARN, 'swap on (%d MB): kubelet expects it off' % swap)
    return _result(OK, 'off' if not swap else '%d MB' % swap)


def check_selinux(facts, policy, roles):
    """SELinux enforcing: standalone hosts warn; a k3s host needs the bundle's policy RPMs for its EL release.

    ``policy['bundle_artifacts']``: {arch: [artifact names]} a host of each arch can be given (the verified
    bundle's ``arch_artifacts``); None when no bundle is known (preflight.yml on its own): then only a
    warning. ``policy['selinux_policy_packages']``: the packages, each an artifact ``<package>-<el>``.
    """
    current = facts['selinux']['current']
    if current != 'enforcing':
        return _result(OK, current)
    if not set(roles) & set(K3S_GROUPS):
        return _result(WARN, 'SELinux enforcing: container policies must come with the bundle')
    info = facts['os']
    el = el_release(info)
    label = '%s %s, %s family' % (info.get('id'), info.get('version'), info.get('family'))
    if not el:
        return _result(FAIL, 'SELinux is enforcing on this k3s host (%s) and Ferry carries SELinux policy RPMs for '
                             'EL releases only (el7, el8, el9): set SELinux permissive, or waive selinux' % label)
    arch = facts['arch']
    wanted = ['%s-%s' % (package, el) for package in policy.get('selinux_policy_packages') or SELINUX_POLICY_PACKAGES]
    carried = policy.get('bundle_artifacts')
    if carried is None:
        return _result(WARN, 'SELinux is enforcing on this k3s host (%s, %s): it needs the artifacts %s for %s in the '
                             'bundle; install.yml checks them' % (label, el, ' and '.join(wanted), arch))
    have = (carried or {}).get(arch) or []
    missing = [name for name in wanted if name not in have]
    if missing:
        return _result(FAIL, 'SELinux is enforcing on this k3s host (%s, %s) and the bundle carries no SELinux policy '
                             'for %s on %s (expected artifacts %s for %s or noarch; missing: %s): add them to the '
                             'bundle spec (docs/install.md, SELinux), or set SELinux permissive' % (
                                 label, el, el, arch, ' and '.join(wanted), arch, ', '.join(missing)))
    return _result(OK, 'enforcing; policy from the bundle: %s' % ', '.join(wanted))


def check_runtime(facts, policy, roles):
    """Can the runtime this host will run read every compression of the bundle's layers for its platform?

    ``policy['layer_compressions']``: {platform: [compression]} (the verified bundle's
    ``layer_compressions``); ``policy['runtime']``: per site group, ``{name, versions: {arch: version}}``,
    the runtime that reads the images on its hosts (standalone: containerd; k3s groups: k3s's embedded
    containerd) and its version per arch (the bundle's artifact versions).
    """
    groups = [role for role in roles if role in SITE_GROUPS]
    if not groups:
        return _result(OK, 'loads no images')
    arch = facts['arch']
    try:
        platform = arch_platform_key(arch)
    except PlatformError:
        return _result(SKIP, 'no platform for %s (see arch)' % arch)
    kinds = (policy.get('layer_compressions') or {}).get(platform) or []
    needs = [(kind, COMPRESSION_MIN_RUNTIME.get(kind)) for kind in kinds if kind in COMPRESSION_MIN_RUNTIME]
    if not needs:
        return _result(OK, 'layers: %s' % (', '.join(kinds) or 'no images'))
    problems, readers = [], []
    runtimes = policy.get('runtime') or {}
    for runtime in [runtimes.get(group) or {} for group in groups]:
        name = runtime.get('name') or 'containerd'
        version = (runtime.get('versions') or {}).get(arch)
        for kind, minimum in needs:
            if name not in minimum:
                problems.append('%s image layers: Ferry does not know whether %s reads them' % (kind, name))
            elif not version:
                problems.append('%s image layers need %s >= %s, and the bundle does not say which %s it carries '
                                'for %s (give that artifact a version in the spec)' % (
                                    kind, name, minimum[name], name, arch))
            elif version_tuple(version) < version_tuple(minimum[name]):
                problems.append('%s image layers need %s >= %s; this host would run %s %s (the bundle\'s, %s): '
                                'build the bundle with images_compression: gzip, or carry a newer %s' % (
                                    kind, name, minimum[name], name, version, arch, name))
        readers.append('%s %s' % (name, version))
    if problems:
        return _result(FAIL, '; '.join(sorted(set(problems), key=problems.index)))
    return _result(OK, '%s reads %s' % (' and '.join(sorted(set(readers))), ', '.join(kinds)))


def check_disk(facts, policy, roles):
    required = dict(policy.get('disk_required_mb', {}))
    by_device = {}
    for disk in facts.get('disks', []):
        need = required.get(disk['path'], 0)
        entry = by_device.setdefault(disk['device'], {'need': 0, 'free': disk['free_mb'], 'paths': []})
        entry['need'] += need
        entry['paths'].append(disk['path'])
    results = []
    for entry in by_device.values():
        paths = '+'.join(entry['paths'])
        if entry['need'] > entry['free']:
            results.append(_result(FAIL, '%s needs %d MB, %d MB free' % (paths, entry['need'], entry['free'])))
        else:
            results.append(_result(OK, '%s %d/%d MB' % (paths, entry['need'], entry['free'])))
    return _worst(results)


def check_minimum(facts, policy, roles, key, fact, unit):
    need = _merge_requirement(policy, key, roles)
    have = facts[fact]
    if have < need:
        return _result(FAIL, '%d%s < %d%s needed for %s' % (have, unit, need, unit, '/'.join(roles) or 'no role'))
    return _result(OK, '%d%s' % (have, unit))


def check_ports(facts, policy, roles):
    wanted = set()
    for role in roles:
        for item in policy.get('ports', {}).get(role, []):
            wanted.add((item.get('proto', 'tcp'), int(item['port'])))
    allowed = set(policy.get('port_owners_allowed', []))
    busy, unknown = [], []
    for listener in facts.get('listeners', []):
        key = (listener['proto'], listener['port'])
        if key not in wanted or listener['process'] in allowed:
            continue
        if listener['process']:
            busy.append('%s/%d in use by %s' % (key[0], key[1], listener['process']))
        else:
            unknown.append('%s/%d in use by a process not visible (kernel socket?)' % key)
    if busy:
        return _result(FAIL, ', '.join(sorted(busy + unknown)))
    if unknown:
        return _result(WARN, ', '.join(sorted(unknown)))
    return _result(OK, '%d free' % len(wanted))


def check_hostnames(hosts, roles_of):
    """Per host: real hostnames must be unique, and valid node names on k3s hosts."""
    seen = {}
    for name, host in hosts.items():
        if host.get('facts'):
            seen.setdefault(host['facts']['hostname'], []).append(name)
    results = {}
    for hostname, names in seen.items():
        for name in names:
            others = [other for other in names if other != name]
            if others:
                results[name] = _result(FAIL, 'hostname %r also used by %s' % (hostname, ', '.join(sorted(others))))
            elif set(roles_of[name]) & {'k3s_server', 'k3s_agent'} and not _NODE_NAME.match(hostname):
                results[name] = _result(FAIL, 'hostname %r is not a valid Kubernetes node name' % hostname)
            else:
                results[name] = _result(OK, hostname)
    return results


def check_clocks(hosts):
    """Each host's clock against the median of all (the controller votes too).

    An offset is measured within +-``uncertainty_s`` (half the round trip of the module that read the
    clock: a slow host, e.g. under emulation or load, reads it late). A host fails only when its skew is
    beyond ``clock_skew_max_s`` even at the favourable end of that interval.
    """
    clocks = dict((name, host['facts']['clock']) for name, host in hosts.items()
                  if host.get('facts') and host['facts'].get('clock'))
    if not clocks:
        return {}
    ordered = sorted([c['offset_s'] for c in clocks.values()] + [0.0])
    median = ordered[len(ordered) // 2]
    results = {}
    for name, clock in clocks.items():
        limit = hosts[name]['policy'].get('clock_skew_max_s', 5)
        skew = clock['offset_s'] - median
        uncertainty = abs(clock.get('uncertainty_s') or 0.0)
        if abs(skew) - uncertainty > limit:
            results[name] = _result(FAIL, 'clock %+.1f s from the others (max %s s%s)' % (
                skew, limit, ', measured within +-%.1f s' % uncertainty if uncertainty >= 0.05 else ''))
        else:
            results[name] = _result(OK, '%+.1f s' % skew + (' +-%.1f s' % uncertainty if uncertainty >= 0.05 else ''))
    return results


def check_inventory(groups):
    """Mistakes in Ferry's groups: {host or '*': [(message, waiver)]}.

    ``waiver``: the preflight_waive name that waives this one mistake (None: only waiving the whole
    ``inventory`` column does).
    """
    problems = {}
    servers = groups.get('k3s_server', [])
    agents = groups.get('k3s_agent', [])
    standalone = groups.get('standalone', [])
    for name in servers:
        if name in agents:
            problems.setdefault(name, []).append(('%s is in both k3s_server and k3s_agent' % name, None))
    for name in standalone:
        for group in K3S_GROUPS:
            if name in groups.get(group, []):
                problems.setdefault(name, []).append(('%s is in both standalone and %s' % (name, group), None))
    if len(servers) > 1 and len(servers) % 2 == 0:
        message = ('k3s_server has %d hosts (%s): embedded etcd needs an odd number of servers (1, 3, 5) to keep '
                   'its quorum; add or remove a server, or waive %s' % (len(servers), ', '.join(servers), EVEN_SERVERS))
        for name in servers:
            problems.setdefault(name, []).append((message, EVEN_SERVERS))
    if agents and not servers:
        problems.setdefault('*', []).append(
            ('k3s_agent hosts (%s) but no host in k3s_server' % ', '.join(agents), None))
    if not servers and not standalone:
        problems.setdefault('*', []).append(('no host in k3s_server or standalone: nothing to run the application', None))
    return problems


def _override(facts, override):
    if not override:
        return facts
    merged = dict(facts)
    merged.update(override)
    return merged


def evaluate(hosts, groups):
    """Evaluate every check for every host.

    ``hosts``: {name: {'facts': ferry_host or None, 'error': str, 'python': probe, 'policy': dict}}
    ``groups``: {group: [host, ...]} (Ferry's groups; others are ignored).
    """
    for host in hosts.values():
        if host.get('facts'):
            host['facts'] = _override(host['facts'], host['policy'].get('facts_override'))
    roles_of = dict((name, host_roles(name, groups)) for name in hosts)
    hostnames = check_hostnames(hosts, roles_of)
    clocks = check_clocks(hosts)
    inventory = check_inventory(groups)
    rows = {}
    for name in sorted(hosts):
        host, roles, policy = hosts[name], roles_of[name], hosts[name]['policy']
        facts = host.get('facts')
        row = {'python': check_python(host.get('python'), policy)}
        if facts:
            row.update({
                'arch': check_arch(facts, policy),
                'os': check_os(facts, policy),
                'kernel': check_kernel(facts, policy, roles),
                'swap': check_swap(facts, policy, roles),
                'selinux': check_selinux(facts, policy, roles),
                'runtime': check_runtime(facts, policy, roles),
                'disk': check_disk(facts, policy, roles),
                'memory': check_minimum(facts, policy, roles, 'memory_mb', 'memory_mb', 'MB'),
                'cpu': check_minimum(facts, policy, roles, 'cpu', 'cpus', ''),
                'ports': check_ports(facts, policy, roles),
                'hostname': hostnames.get(name, _result(SKIP)),
                'clock': clocks.get(name, _result(SKIP)),
            })
        else:
            row.update(dict((check, _result(SKIP, host.get('error', ''))) for check in CHECKS[1:-1]))
            if row['python']['status'] == OK:
                row['arch'] = _result(FAIL, 'host facts not gathered: %s' % (host.get('error') or 'no result'))
        mistakes = inventory.get(name, [])
        if not roles:
            row['inventory'] = _result(WARN, '%s is in none of %s' % (name, ', '.join(FERRY_GROUPS)))
        elif mistakes:
            waive = policy.get('waive', [])
            row['inventory'] = _worst([_result(WAIVED if waiver and waiver in waive else FAIL, message)
                                       for message, waiver in mistakes])
        else:
            row['inventory'] = _result(OK, ','.join(roles))
        for check in policy.get('waive', []):
            if check in row and row[check]['status'] in (WARN, FAIL):
                row[check] = _result(WAIVED, row[check]['detail'])
        rows[name] = row
    return _summarize(rows, [message for message, dummy in inventory.get('*', [])],
                      dict((n, hosts[n]['policy'].get('waive', [])) for n in hosts))


def _summarize(rows, global_problems, waivers):
    failures, warnings, waived = [], [], []
    for name, row in sorted(rows.items()):
        for check in CHECKS:
            result = row.get(check, _result(SKIP))
            line = '%s: %s: %s' % (name, check, result['detail'])
            if result['status'] == FAIL:
                failures.append(line)
            elif result['status'] == WARN:
                warnings.append(line)
            elif result['status'] == WAIVED:
                waived.append(line)
    failures.extend('inventory: ' + problem for problem in global_problems)
    report = {'rows': rows, 'failures': failures, 'warnings': warnings, 'waived': waived,
              'waivers': dict((name, list(checks)) for name, checks in waivers.items() if checks),
              'failed': bool(failures)}
    report['lines'] = render(report)
    return report


def render(report):
    """The report as text lines: the table, then failures, warnings and waivers."""
    names = sorted(report['rows'])
    width = max([len('host')] + [len(n) for n in names])
    widths = dict((c, max(len(c), 6)) for c in CHECKS)
    header = 'host'.ljust(width) + ' | ' + ' | '.join(c.ljust(widths[c]) for c in CHECKS)
    lines = [header, '-' * len(header)]
    for name in names:
        row = report['rows'][name]
        cells = [row.get(c, _result(SKIP))['status'].ljust(widths[c]) for c in CHECKS]
        lines.append(name.ljust(width) + ' | ' + ' | '.join(cells))
    for title, key in (('FAILED', 'failures'), ('WARNINGS', 'warnings'), ('WAIVED', 'waived')):
        if report[key]:
            lines.append('%s:' % title)
            lines.extend('  ' + item for item in report[key])
    if report['waivers']:
        lines.append('WAIVERS SET: ' + '; '.join('%s: %s' % (name, ', '.join(checks))
                                                 for name, checks in sorted(report['waivers'].items())))
    lines.append('RESULT: %s (%d hosts, %d failed checks, %d warnings, %d waived)' % (
        'STOP' if report['failed'] else 'PASS', len(names), len(report['failures']),
        len(report['warnings']), len(report['waived'])))
    return lines
