# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_bundle.site (what ./bootstrap makes, its signed record) and _bundle.kit (kit.sha256)."""

import os

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle import site as S
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.kit import check_kit_sums, kit_files, kit_sums
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import write_site_record

KEY = b'ab' * 32


def make(root, files, links=()):
    for rel, data in files.items():
        path = os.path.join(str(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as fh:
            fh.write(data)
    for rel, target in links:
        os.symlink(target, os.path.join(str(root), rel))


@pytest.fixture
def site(tmp_path):
    root = tmp_path / 'bundle'
    make(root, {'.ferry-venv/bin/ansible': b'#!/x/python\n', 'collections/ansible_collections/f/a/x.py': b'x = 1\n',
                'inventory/hosts.yml': b'all: {}\n'}, links=[('.ferry-venv/bin/python', '/usr/bin/python3')])
    key = tmp_path / 'site.key'
    key.write_bytes(KEY + b'\n')
    return str(root), str(key)


def test_what_bootstrap_made_matches_its_record(site):
    root, key = site
    write_site_record(root, key)
    assert S.check_site_local(root, key) == []


def test_nothing_made_needs_no_record(tmp_path):
    make(tmp_path, {'inventory/hosts.yml': b'all: {}\n'})
    assert S.check_site_local(str(tmp_path), str(tmp_path / 'no.key')) == []


def test_no_record_no_key_or_foreign_record_are_problems(site, tmp_path):
    root, key = site
    problems = S.check_site_local(root, key)
    assert problems == ['.ferry-venv/, collections/: not made by ./bootstrap at this site (%s has no %s: ./bootstrap '
                        'has not run there); remove .ferry-venv/ collections/ and run ./bootstrap' % (root, S.RECORD)]
    write_site_record(root, key)
    assert 'site key %s does not exist' % (tmp_path / 'other.key') in S.check_site_local(root, str(tmp_path / 'other.key'))[0]
    other = str(tmp_path / 'medium.key')
    write_site_record(root, other)  # made with the medium, not with this site's key
    assert 'is not signed by the site key %s' % key in S.check_site_local(root, key)[0]


def test_changes_after_bootstrap_are_named(site):
    root, key = site
    write_site_record(root, key)
    make(root, {'.ferry-venv/lib/site-packages/evil.pth': b'import os\n',
                'collections/ansible_collections/f/a/x.py': b'x = 2\n'})
    os.unlink(os.path.join(root, '.ferry-venv/bin/ansible'))
    os.unlink(os.path.join(root, '.ferry-venv/bin/python'))
    os.symlink('/tmp/evil', os.path.join(root, '.ferry-venv/bin/python'))
    problems = S.check_site_local(root, key)
    assert '.ferry-venv/lib/site-packages/evil.pth: not in the site record of ./bootstrap (added)' in problems
    assert '.ferry-venv/bin/ansible: in the site record of ./bootstrap but missing' in problems
    assert any(p.startswith('collections/ansible_collections/f/a/x.py: changed since ./bootstrap made it') for p in problems)
    assert ('.ferry-venv/bin/python: changed since ./bootstrap made it (recorded L /usr/bin/python3, actual L /tmp/evil)'
            in problems)
    assert len(problems) == 4


def test_special_files_and_malformed_records(site):
    root, key = site
    os.mkfifo(os.path.join(root, '.ferry-venv/bin/fifo'))
    write_site_record(root, key)
    assert S.check_site_local(root, key) == ['.ferry-venv/bin/fifo: not in the site record of ./bootstrap (a special file)']
    os.unlink(os.path.join(root, '.ferry-venv/bin/fifo'))
    write_site_record(root, key, extra_lines=['X\tsomething\tpath'])
    assert 'malformed line' in S.check_site_local(root, key)[0]
    os.unlink(os.path.join(root, S.RECORD))
    os.symlink('/dev/zero', os.path.join(root, S.RECORD))  # never read
    assert '%s: expected a regular file, actual a symlink' % os.path.join(root, S.RECORD) in S.check_site_local(root, key)[0]
    os.unlink(os.path.join(root, S.RECORD))
    os.mkfifo(os.path.join(root, S.RECORD))  # never waited on
    assert '%s: expected a regular file, actual a fifo' % os.path.join(root, S.RECORD) in S.check_site_local(root, key)[0]


def test_site_local_paths_and_key_location(monkeypatch):
    assert S.is_site_local('.ferry-venv/bin/python') and S.is_site_local('inventory/group_vars/all.yml')
    assert S.is_site_local('inventory/hosts.yml') and S.is_site_local(S.RECORD)
    assert not S.is_site_local('inventory/hosts.yml.example') and not S.is_site_local('kit/collections/x.tar.gz')
    assert not S.is_site_local('apps/shop/1.0/.ferry-venv')
    monkeypatch.setenv(S.SITE_KEY_ENV, '/srv/key')
    assert S.default_site_key() == '/srv/key'
    monkeypatch.delenv(S.SITE_KEY_ENV)
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    assert S.default_site_key() == '/etc/ferry/site.key'
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    monkeypatch.setenv('XDG_CONFIG_HOME', '/home/u/.config')
    assert S.default_site_key() == '/home/u/.config/ferry/site.key'


def test_read_record_refuses_an_oversized_key(site):
    root, key = site
    write_site_record(root, key)
    with open(key, 'wb') as fh:
        fh.write(b'k' * 5000)
    with pytest.raises(BundleError, match='site key .* is too large: expected at most 4096 bytes'):
        S.read_record(root, key)


def test_kit_sums():
    manifest = {'files': {'bootstrap': {'sha256': 'a' * 64, 'size': 1}, 'kit/wheels/x.whl': {'sha256': 'b' * 64, 'size': 1},
                          'images/index.json': {'sha256': 'c' * 64, 'size': 1},
                          'artifacts/x86_64/k3s/k3s': {'sha256': 'd' * 64, 'size': 1},
                          'apps/shop/1.0/a.jar': {'sha256': 'e' * 64, 'size': 1}}}
    assert kit_files(manifest) == ['bootstrap', 'kit/wheels/x.whl']
    sums = kit_sums(manifest)
    assert sums == ('%s  bootstrap\n%s  kit/wheels/x.whl\n' % ('a' * 64, 'b' * 64)).encode()
    assert check_kit_sums(sums, manifest) == []
    assert check_kit_sums(None, manifest) == ['kit.sha256 is missing: a site could not check the kit before running it']
    forged = sums.replace(b'a' * 64, b'f' * 64)
    problem = check_kit_sums(forged, manifest)[0]
    assert problem.startswith('kit.sha256 does not match the manifest (not in the manifest: %s  bootstrap' % ('f' * 64))
    assert 'missing: %s  bootstrap' % ('a' * 64) in problem
