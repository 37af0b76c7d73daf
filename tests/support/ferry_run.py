# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way tests and benches run ansible-playbook (or ansible) and read the result as data.

``run_playbook`` runs a playbook with the ansible.posix.json callback and returns a ``Run``: its
exit code, output, the parsed JSON and helpers over it (task results, durations, stats). Used by the
Molecule verifiers (extensions/molecule/*/tests), the unit tests of the playbooks
(tests/unit/playbooks) and the bench scripts (bench/), which put this directory on sys.path.
No pytest here.
"""
import json
import os
import subprocess
import sys
import time
from datetime import datetime

import yaml

PROJECT = os.environ.get('MOLECULE_PROJECT_DIRECTORY') or os.path.realpath(os.path.join(os.path.dirname(__file__), '..', '..'))
BIN = os.path.dirname(os.path.abspath(sys.executable))
JSON_CALLBACK = 'ansible.posix.json'


def json_seconds(stamp):
    """A time stamp of the ansible.posix.json callback (2024-06-01T12:00:00.123456Z) in seconds."""
    return datetime.strptime(stamp, '%Y-%m-%dT%H:%M:%S.%fZ').timestamp()


class Run(object):
    """One finished ansible-playbook run: rc, stdout, stderr, wall seconds and (JSON callback) data."""

    def __init__(self, proc, wall=None, parse=True):
        self.rc = proc.returncode
        self.stdout = proc.stdout or ''
        self.stderr = proc.stderr or ''
        self.wall = wall
        self.data = json.loads(self.stdout[self.stdout.index('{'):]) if parse and '{' in self.stdout else {}

    def tasks(self, play=None):
        """The callback's task entries ({'task': {name, duration}, 'hosts': {host: result}}), of every play or one."""
        plays = self.data.get('plays', [])
        for entry in (plays if play is None else plays[play:play + 1]):
            yield from entry['tasks']

    def task_results(self, task_name):
        """{host: result} of the first task whose name contains ``task_name``."""
        for task in self.tasks():
            if task_name in task['task']['name']:
                return task['hosts']
        return {}

    def task_seconds(self, task):
        """How long a task entry ran (its first host starting to its last one done)."""
        duration = task['task']['duration']
        return json_seconds(duration['end']) - json_seconds(duration['start'])

    def stats(self):
        return self.data.get('stats', {})

    def tail(self, out=6000, err=3000):
        """The end of stdout and stderr, for a failure message."""
        return '%s\n%s' % (self.stdout[-out:], self.stderr[-err:])

    def report(self):
        """The preflight report (the run_once set_fact lands on every host: take any)."""
        for result in self.task_results('Evaluate the checks for every host at once').values():
            return result['ansible_facts']['preflight_report']
        raise AssertionError('no preflight report in the run:\n%s\n%s' % (self.stdout[-3000:], self.stderr[-3000:]))


def molecule_hosts():
    """A testinfra host for every container of the scenario."""
    import testinfra
    inventory = os.environ['MOLECULE_INVENTORY_FILE']
    names = sorted(molecule_inventory()['all']['hosts'])
    return dict((name, testinfra.get_host('ansible://%s?ansible_inventory=%s' % (name, inventory))) for name in names)


def molecule_inventory():
    path = os.environ['MOLECULE_INVENTORY_FILE']
    with open(path) as handle:
        return yaml.safe_load(handle)


def write_inventory(tmp_path, groups, hostvars=None, name='hosts.yml'):
    """An inventory over the scenario's containers: ``groups`` maps group -> [alias], and
    ``hostvars`` may point an alias at a container with ansible_host."""
    hosts = {}
    for members in groups.values():
        for alias in members:
            hosts[alias] = dict((hostvars or {}).get(alias, {}))
    inventory = {'all': {
        'vars': {'ansible_connection': 'community.docker.docker'},
        'hosts': hosts,
        'children': dict((group, {'hosts': dict((alias, {}) for alias in members)}) for group, members in groups.items()),
    }}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return str(path)


def tool(name):
    """ansible-playbook / ansible beside this Python when there is one (a venv), else from PATH."""
    path = os.path.join(BIN, name)
    return path if os.path.exists(path) else name


def ansible(args, command='ansible-playbook', callback=JSON_CALLBACK, project=True, env=None, cwd=PROJECT,
            timeout=None, merge=False):
    """Run ``command`` with ``args``; returns a Run.

    ``callback``: the stdout callback (None: the configured one, plain text). ``project``: the checkout's
    ansible.cfg and .collections (else whatever ``cwd`` and the environment give). ``env``: more
    variables. ``merge``: stderr into stdout.
    """
    full_env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    if callback:
        full_env['ANSIBLE_STDOUT_CALLBACK'] = callback
    if project:
        full_env.update(ANSIBLE_CONFIG=os.path.join(PROJECT, 'ansible.cfg'),
                        ANSIBLE_COLLECTIONS_PATH=os.path.join(PROJECT, '.collections'))
    full_env.update(env or {})
    start = time.time()
    proc = subprocess.run([tool(command)] + list(args), env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge else subprocess.PIPE, universal_newlines=True,
                          timeout=timeout, check=False)
    return Run(proc, time.time() - start, parse=callback == JSON_CALLBACK)


def run_playbook(playbook, inventory=None, extra_vars=None, timeout=900, limit=None, env=None, args=()):
    """ansible-playbook ``playbook`` with the JSON callback, the checkout's config and collections."""
    argv = ['-i', inventory] if inventory else []
    argv.append(playbook)
    if limit:
        argv += ['--limit', limit if isinstance(limit, str) else ','.join(limit)]
    if extra_vars:
        argv += ['-e', json.dumps(extra_vars)]
    return ansible(argv + list(args), env=env, timeout=timeout)
