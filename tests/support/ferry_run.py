"""Run a Ferry playbook from a Molecule verifier and read its results as data.

The verifier runs the failing cases itself: each one is a real ansible-playbook
run against the scenario's hosts, read back through the ansible.posix.json callback.
"""
import json
import os
import subprocess

import yaml

PROJECT = os.environ.get('MOLECULE_PROJECT_DIRECTORY') or os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


class Run(object):
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = json.loads(proc.stdout[proc.stdout.index('{'):]) if '{' in proc.stdout else {}

    def task_results(self, task_name):
        """{host: result} of the first task whose name contains ``task_name``."""
        for play in self.data.get('plays', []):
            for task in play['tasks']:
                if task_name in task['task']['name']:
                    return task['hosts']
        return {}

    def stats(self):
        return self.data.get('stats', {})

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


def run_playbook(playbook, inventory, extra_vars=None, timeout=900):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
        'ANSIBLE_CONFIG': os.path.join(PROJECT, 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(PROJECT, '.collections'),
        'ANSIBLE_NOCOLOR': '1',
    })
    argv = ['ansible-playbook', '-i', inventory, playbook]
    if extra_vars:
        argv += ['-e', json.dumps(extra_vars)]
    proc = subprocess.run(argv, env=env, cwd=PROJECT, capture_output=True, text=True, timeout=timeout, check=False)
    return Run(proc)
