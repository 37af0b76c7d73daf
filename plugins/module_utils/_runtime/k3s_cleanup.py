# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a k3s node leaves on a host once its unit is stopped, found and removed (module k3s_cleanup).

Only things that are k3s's by name or place, never by guess:

* processes: those whose binary lies under ``<data dir>/data/`` (k3s unpacks its containerd, shims and
  CNI plugins there; a deleted binary reads ``... (deleted)``), those in a ``kubepods`` cgroup (pod
  processes a killed shim left behind), and every descendant of those (the containers' processes);
* mounts: every mount point strictly below one of the directories (``/run/k3s``, ``<data dir>``,
  ``/var/lib/kubelet``), and one AT such a directory only when it is a bind of itself (what the kubelet
  makes of /var/lib/kubelet): a filesystem the site mounted there (its own disk) stays mounted;
  ``/run/netns/cni-*``. Deepest first;
* network interfaces by name (cni0, flannel.1, flannel-v6.1, flannel-wg, flannel-wg-v6, kube-ipvs0) and
  the veth interfaces enslaved to the bridge cni0;
* iptables/ip6tables: chains whose name starts with KUBE-, FLANNEL or CNI-, rules in them or jumping to
  them, rules whose comment names kube*, k8s, flannel or cni, and flannel's uncommented rules in FORWARD and
  POSTROUTING (those whose -s or -d is the flannel network of /run/flannel/subnet.env). Only the tables
  that change are restored (iptables-restore replaces a table it is given, and leaves the others alone);
  every other rule stays as it was;
* paths, except those to keep: a kept path's parents are emptied around it, never removed.

``scan`` reads, ``apply`` removes; both return the same kind of dict, so check mode reports what
``apply`` would remove and ``changed`` is a comparison of two scans. A leaf user: standard library
and ``_cli`` only; Python 3.6+.
"""

import glob
import os
import re
import shutil
import signal
import time

MOUNT_DIRS = ('/run/k3s', '/var/lib/rancher/k3s', '/var/lib/kubelet')
NETNS_DIR = '/run/netns'
NETNS_PREFIX = 'cni-'
INTERFACES = ('cni0', 'flannel.1', 'flannel-v6.1', 'flannel-wg', 'flannel-wg-v6', 'kube-ipvs0')
BRIDGE = 'cni0'
CHAIN_PREFIXES = ('KUBE-', 'FLANNEL', 'CNI-')
COMMENT_RE = re.compile(r'(^|[^a-z0-9])(kube|k8s|flannel|cni)', re.IGNORECASE)
FLANNEL_CHAINS = ('FORWARD', 'POSTROUTING')
DELETED = ' (deleted)'
CATEGORIES = ('processes', 'mounts', 'netns', 'interfaces', 'iptables', 'paths')


class CleanupError(Exception):
    """Something k3s's could not be removed; ``msg`` says what and what was found."""

    def __init__(self, msg):
        super(CleanupError, self).__init__(msg)
        self.msg = msg


class Host(object):
    """Where the host's state is read and how it is changed (tests give a fake root and runner)."""

    def __init__(self, runner, proc='/proc', sys_net='/sys/class/net', flannel_env='/run/flannel/subnet.env',
                 netns_dir=NETNS_DIR, which=None, kill=os.kill, sleep=time.sleep):
        self.runner = runner
        self.proc = proc
        self.mountinfo = os.path.join(proc, 'self', 'mountinfo')
        self.sys_net = sys_net
        self.netns_dir = netns_dir
        self.flannel_env = flannel_env
        self.which = which or _which
        self.kill = kill
        self.sleep = sleep


def _which(name):
    for directory in ('/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin', '/usr/local/bin'):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def under(path, directory):
    """``path`` is ``directory`` or below it."""
    directory = directory.rstrip('/') or '/'
    return path == directory or path.startswith(directory + '/') or directory == '/'


# --------------------------------------------------------------------------- processes

def read_processes(proc):
    """{pid: {'ppid', 'exe', 'cgroup', 'comm', 'zombie'}} of every process visible in ``proc``."""
    table = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        base = os.path.join(proc, name)
        stat = _read(os.path.join(base, 'stat'))
        if not stat or ')' not in stat:
            continue
        comm, rest = stat[stat.index('(') + 1:stat.rindex(')')], stat[stat.rindex(')') + 1:].split()
        try:
            exe = os.readlink(os.path.join(base, 'exe'))
        except OSError:
            exe = ''  # a kernel thread, or gone
        table[int(name)] = {'ppid': int(rest[1]), 'exe': exe, 'comm': comm, 'zombie': rest[0] == 'Z',
                            'cgroup': _read(os.path.join(base, 'cgroup')) or ''}
    return table


def _in_kubepods(cgroup):
    for line in cgroup.splitlines():
        path = line.split(':', 2)[-1]
        if any(part == 'kubepods' or part.startswith('kubepods.') or part.startswith('kubepods-')
               for part in path.split('/')):
            return True
    return False


def select_processes(table, data_dir, own_pid=None):
    """Pids of k3s's processes in ``table`` and of all their descendants, sorted; never pid 1 or ``own_pid``'s line."""
    bin_dir = data_dir.rstrip('/') + '/data/'
    roots = set()
    for pid, info in table.items():
        exe = info['exe'][:-len(DELETED)] if info['exe'].endswith(DELETED) else info['exe']
        if not info['zombie'] and (exe.startswith(bin_dir) or _in_kubepods(info['cgroup'])):
            roots.add(pid)
    children = {}
    for pid, info in table.items():
        children.setdefault(info['ppid'], []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    protected = {1}
    pid = own_pid
    while pid and pid in table and pid not in protected:  # this module and its parents
        protected.add(pid)
        pid = table[pid]['ppid']
    return sorted(p for p in found - protected if not table[p]['zombie'])


def describe_process(pid, info):
    return '%d %s (%s)' % (pid, info['comm'], info['exe'] or '-')


# --------------------------------------------------------------------------- mounts

def _unescape(text):
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), text)


def read_mounts(mountinfo):
    """Mounts of a mountinfo file in its order: dicts with id, parent, dev, root, point."""
    mounts = []
    for line in (_read(mountinfo) or '').splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        mounts.append({'id': fields[0], 'parent': fields[1], 'dev': fields[2], 'root': _unescape(fields[3]),
                       'point': _unescape(fields[4])})
    return mounts


def _self_bind(mount, by_id):
    """``mount`` binds the very directory it is mounted on (same device, the parent's root + the relative path)."""
    parent = by_id.get(mount['parent'])
    if parent is None or parent['dev'] != mount['dev'] or not under(mount['point'], parent['point']):
        return False
    rel = os.path.relpath(mount['point'], parent['point'])
    return os.path.normpath(os.path.join(parent['root'], rel)) == os.path.normpath(mount['root'])


def select_mounts(mounts, dirs, netns_dir=NETNS_DIR, netns_prefix=NETNS_PREFIX):
    """Mount points to unmount, deepest first (a stacked point once per mount, the top one first)."""
    by_id = dict((m['id'], m) for m in mounts)
    chosen = []
    for index, mount in enumerate(mounts):
        point = mount['point']
        below = any(under(point, d) and point != d.rstrip('/') for d in dirs)
        at = any(point == d.rstrip('/') for d in dirs) and _self_bind(mount, by_id)
        netns = os.path.dirname(point) == netns_dir and os.path.basename(point).startswith(netns_prefix)
        if below or at or netns:
            chosen.append((point.count('/'), index, point))
    return [point for _depth, _index, point in sorted(chosen, reverse=True)]


def select_netns_files(netns_dir=NETNS_DIR, netns_prefix=NETNS_PREFIX):
    try:
        names = os.listdir(netns_dir)
    except OSError:
        return []
    return sorted(os.path.join(netns_dir, n) for n in names if n.startswith(netns_prefix))


# --------------------------------------------------------------------------- interfaces

def select_interfaces(sys_net, names=INTERFACES, bridge=BRIDGE):
    """k3s's interfaces present in ``sys_net``: the bridge's veth ports first, then the named ones."""
    try:
        present = sorted(os.listdir(sys_net))
    except OSError:
        return []
    ports = []
    for name in present:
        try:
            master = os.path.basename(os.readlink(os.path.join(sys_net, name, 'master')))
        except OSError:
            master = ''
        if name.startswith('veth') and master == bridge:
            ports.append(name)
    return ports + [n for n in names if n in present]


# --------------------------------------------------------------------------- iptables

def flannel_networks(text):
    """FLANNEL_NETWORK and FLANNEL_IPV6_NETWORK of /run/flannel/subnet.env."""
    found = []
    for line in (text or '').splitlines():
        key, _sep, value = line.partition('=')
        if key.strip() in ('FLANNEL_NETWORK', 'FLANNEL_IPV6_NETWORK') and value.strip():
            found.append(value.strip())
    return found


def _option(words, flag):
    """The operand of ``flag`` in a rule's words (None when absent)."""
    for index, word in enumerate(words[:-1]):
        if word == flag:
            return words[index + 1]
    return None


def _comment(rule):
    match = re.search(r'--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))', rule)
    return (match.group(1) if match.group(1) is not None else match.group(2)) if match else ''


def _k3s_chain(name):
    return bool(name) and name.startswith(CHAIN_PREFIXES)


def k3s_rule(rule, networks=()):
    """An iptables-save ``-A`` line that k3s (kube-proxy, kube-router, flannel, CNI plugins) made."""
    words = rule.split()
    chain = words[1] if len(words) > 1 else ''
    if _k3s_chain(chain) or _k3s_chain(_option(words, '-j')) or _k3s_chain(_option(words, '-g')):
        return True
    comment = _comment(rule)
    if comment:
        return bool(COMMENT_RE.search(comment))
    if chain in FLANNEL_CHAINS:
        return _option(words, '-s') in networks or _option(words, '-d') in networks
    return False


def filter_save(text, networks=()):
    """(filtered text of the tables that change, [removed lines]) of an iptables-save output."""
    tables, removed = [], []
    current = None
    for line in text.splitlines():
        if line.startswith('*'):
            current = {'lines': [line], 'changed': False}
            tables.append(current)
            continue
        if current is None:
            continue  # comments before the first table
        drop = (line.startswith(':') and _k3s_chain(line[1:].split(' ', 1)[0])) or \
            (line.startswith('-A ') and k3s_rule(line, networks))
        if drop:
            current['changed'] = True
            removed.append('%s %s' % (current['lines'][0], line))
        elif not line.startswith('#'):
            current['lines'].append(line)
        if line == 'COMMIT':
            current = None
    text = ''.join('\n'.join(t['lines']) + '\n' for t in tables if t['changed'])
    return text, removed


# --------------------------------------------------------------------------- paths

def plan_paths(paths, keep):
    """Paths to remove: each of ``paths`` (globs expanded) that exists, or, when a kept path lies below
    it, its children that do not lead to a kept path (recursively). Sorted."""
    keep = [os.path.normpath(k) for k in keep]
    out = []

    def visit(path):
        if not os.path.lexists(path):
            return
        if any(k == path for k in keep):
            return
        if any(under(k, path) for k in keep) and os.path.isdir(path) and not os.path.islink(path):
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name))
            return
        out.append(path)

    for pattern in paths:
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in '*?[') else [pattern]
        for path in matches:
            visit(os.path.normpath(path))
    return sorted(set(out))


def remove_path(path, mounts):
    """Remove ``path`` (a tree without crossing into any mount, refused when one lies below it)."""
    inside = [m['point'] for m in mounts if under(m['point'], path)]
    if inside:
        raise CleanupError('%s is not removed: %s still mounted below it (unmount it first)' % (path, ', '.join(inside)))
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


# --------------------------------------------------------------------------- scan and apply

class Cleanup(object):
    """Finds (``scan``) and removes (``apply``) what k3s left on ``host``."""

    def __init__(self, host, data_dir, mount_dirs=MOUNT_DIRS, paths=(), keep=(), own_pid=None):
        self.host = host
        self.data_dir = data_dir.rstrip('/')
        self.mount_dirs = list(mount_dirs)
        self.paths = list(paths)
        self.keep = list(keep)
        self.own_pid = own_pid if own_pid is not None else os.getpid()
        self.warnings = []

    def _tables(self):
        """[(tool, save, restore)] of iptables and ip6tables present on the host."""
        out = []
        for tool in ('iptables', 'ip6tables'):
            save, restore = self.host.which(tool + '-save'), self.host.which(tool + '-restore')
            if save and restore:
                out.append((tool, save, restore))
        return out

    def _iptables(self, networks):
        """{tool: (filtered text, removed lines, restore)} of the tools with something to remove."""
        found = {}
        for tool, save, restore in self._tables():
            rc, out, err = self.host.runner.run([save])
            if rc != 0:  # e.g. a kernel without IPv6 tables: nothing of k3s's can be there either
                warning = '%s failed (exit code %d), its rules were not looked at: %s' % (save, rc, (err or out).strip())
                if warning not in self.warnings:
                    self.warnings.append(warning)
                continue
            text, removed = filter_save(out, networks)
            if removed:
                found[tool] = (text, removed, restore)
        return found

    def scan(self):
        table = read_processes(self.host.proc)
        networks = flannel_networks(_read(self.host.flannel_env))
        iptables = self._iptables(networks)
        return {
            'processes': [describe_process(p, table[p]) for p in select_processes(table, self.data_dir, self.own_pid)],
            'mounts': select_mounts(read_mounts(self.host.mountinfo), self.mount_dirs, self.host.netns_dir),
            'netns': select_netns_files(self.host.netns_dir),
            'interfaces': select_interfaces(self.host.sys_net),
            'iptables': sorted('%s: %s' % (tool, line) for tool, (_t, lines, _r) in iptables.items() for line in lines),
            'paths': plan_paths(self.paths, self.keep),
        }

    def apply(self):
        """Remove everything ``scan`` finds, in order: processes, mounts, netns files, interfaces, rules, paths."""
        self._kill()
        self._unmount()
        for path in select_netns_files(self.host.netns_dir):
            os.remove(path)
        for name in select_interfaces(self.host.sys_net):
            rc, out, err = self.host.runner.run(['ip', 'link', 'delete', name])
            if rc != 0 and name in select_interfaces(self.host.sys_net):
                raise CleanupError('ip link delete %s failed (exit code %d): %s' % (name, rc, (err or out).strip()))
        networks = flannel_networks(_read(self.host.flannel_env))
        for tool, (text, _lines, restore) in sorted(self._iptables(networks).items()):
            rc, out, err = self.host.runner.run([restore], data=text)
            if rc != 0:
                raise CleanupError('%s of the tables without k3s\'s rules failed (exit code %d): %s'
                                   % (restore, rc, (err or out).strip()))
        mounts = read_mounts(self.host.mountinfo)
        for path in plan_paths(self.paths, self.keep):
            remove_path(path, mounts)

    def _kill(self, timeout=30.0):
        table = read_processes(self.host.proc)
        pids = select_processes(table, self.data_dir, self.own_pid)
        for pid in pids:
            try:
                self.host.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # gone meanwhile
        deadline = time.time() + timeout
        while True:
            table = read_processes(self.host.proc)
            left = [p for p in pids if p in table and not table[p]['zombie']]
            if not left:
                return
            if time.time() > deadline:
                raise CleanupError('k3s\'s processes still run %d s after SIGKILL: %s'
                                   % (timeout, ', '.join(describe_process(p, table[p]) for p in left)))
            self.host.sleep(0.2)

    def _unmount(self):
        for point in select_mounts(read_mounts(self.host.mountinfo), self.mount_dirs, self.host.netns_dir):
            rc, out, err = self.host.runner.run(['umount', point])
            if rc != 0:
                rc, out, err = self.host.runner.run(['umount', '-l', point])
            if rc != 0 and point in [m['point'] for m in read_mounts(self.host.mountinfo)]:
                raise CleanupError('umount %s failed (exit code %d): %s' % (point, rc, (err or out).strip()))


def changed(before, after):
    """What ``apply`` removed: for each category the entries of ``before`` no longer in ``after``."""
    return dict((key, [item for item in before[key] if item not in after[key]]) for key in CATEGORIES)
