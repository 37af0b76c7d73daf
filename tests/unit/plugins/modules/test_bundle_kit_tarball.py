# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bundle_kit_tarball and _bundle.kit.reproducible_tar_gz: the same collection, the same bytes."""

import gzip
import io
import os
import subprocess
import sys
import tarfile

from ansible_collections.ferry.airgap.plugins.modules import bundle_kit_tarball
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.kit import reproducible_tar_gz

from ansible_collections.ferry.airgap.tests.unit.plugins.test_support import modules as testlib
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.images import add_entry, gzip_bytes

FILES = [('MANIFEST.json', b'{"collection_info": {}}'), ('FILES.json', b'{"files": []}'),
         ('plugins/modules/x.py', b'print(1)\n'), ('README.md', b'# x\n')]


def write_targz(path, entries, mtime, owner, level=9, gzip_mtime=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            add_entry(tar, entry, mtime=mtime, owner=owner)
    with open(str(path), 'wb') as fh:
        if gzip_mtime is None:
            fh.write(gzip_bytes(buf.getvalue(), level))
        else:
            fh.write(gzip.compress(buf.getvalue(), level, mtime=gzip_mtime))
    return str(path)


def run(capsys, args, check_mode=False):
    result, code = testlib.run_module(bundle_kit_tarball, args, capsys, check_mode=check_mode)
    return code, result


def test_same_content_same_bytes_whatever_times_owners_and_order(tmp_path):
    dirs = [{'name': 'plugins', 'type': tarfile.DIRTYPE}, {'name': 'plugins/modules', 'type': tarfile.DIRTYPE}]
    one = write_targz(tmp_path / 'one.tar.gz', dirs + FILES, 1700000000, 'alice', gzip_mtime=1700000000)
    two = write_targz(tmp_path / 'two.tar.gz', list(reversed(FILES)) + dirs, 1800000000, 'bob', level=1,
                      gzip_mtime=1800000000)
    data = reproducible_tar_gz(one)
    assert data == reproducible_tar_gz(two)
    assert data[4:8] == b'\0\0\0\0'  # gzip mtime
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ['MANIFEST.json', 'FILES.json', 'README.md', 'plugins', 'plugins/modules',
                                             'plugins/modules/x.py']
        assert set((m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members) == {(0, 0, 0, '', '')}
        assert [oct(m.mode) for m in members] == ['0o644'] * 3 + ['0o755'] * 2 + ['0o644']
        assert dict((m.name, tar.extractfile(m).read()) for m in members if m.isreg()) == dict(FILES)


def test_other_content_other_bytes(tmp_path):
    one = write_targz(tmp_path / 'one.tar.gz', FILES, 0, 'root')
    two = write_targz(tmp_path / 'two.tar.gz', FILES[:-1] + [('README.md', b'# y\n')], 0, 'root')
    assert reproducible_tar_gz(one) != reproducible_tar_gz(two)


def test_two_galaxy_builds_give_the_same_kit_tarball(tmp_path):
    """The real thing: ansible-galaxy stamps build times; rewritten, two builds are byte-identical."""
    src = tmp_path / 'coll'
    (src / 'plugins' / 'modules').mkdir(parents=True)
    (src / 'galaxy.yml').write_text('namespace: demo\nname: kit\nversion: 1.0.0\nreadme: README.md\n'
                                    'authors: [x]\nbuild_ignore: []\n')
    (src / 'README.md').write_text('# demo\n')
    (src / 'plugins' / 'modules' / 'x.py').write_text('print(1)\n')
    galaxy = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
    built = []
    for n, stamp in enumerate((1600000000, 1650000000)):
        for root, dummy, files in os.walk(str(src)):
            for name in files:
                os.utime(os.path.join(root, name), (stamp, stamp))
        out = tmp_path / ('out%d' % n)
        subprocess.run([galaxy, 'collection', 'build', '--output-path', str(out), str(src)], check=True,
                       stdout=subprocess.DEVNULL)
        built.append(str(out / 'demo-kit-1.0.0.tar.gz'))
    with open(built[0], 'rb') as a, open(built[1], 'rb') as b:
        assert a.read() != b.read()  # what the module is for
    assert reproducible_tar_gz(built[0]) == reproducible_tar_gz(built[1])


def test_module_writes_once_and_check_mode_writes_nothing(capsys, tmp_path):
    src = write_targz(tmp_path / 'src.tar.gz', FILES, 1700000000, 'alice')
    dest = str(tmp_path / 'kit.tar.gz')
    code, result = run(capsys, {'src': src, 'dest': dest}, check_mode=True)
    assert (code, result['changed'], os.path.exists(dest)) == (0, True, False)
    code, result = run(capsys, {'src': src, 'dest': dest})
    assert (code, result['changed'], result['size']) == (0, True, os.path.getsize(dest))
    code, again = run(capsys, {'src': src, 'dest': dest})
    assert (code, again['changed'], again['sha256']) == (0, False, result['sha256'])


def test_unsafe_or_corrupt_input_fails_naming_it(capsys, tmp_path):
    evil = write_targz(tmp_path / 'evil.tar.gz', FILES + [('../outside', b'x')], 0, 'root')
    code, result = run(capsys, {'src': evil, 'dest': str(tmp_path / 'kit.tar.gz')})
    assert code == 1 and 'evil.tar.gz' in result['msg'] and '..' in result['msg']
    cut = tmp_path / 'cut.tar.gz'
    with open(write_targz(tmp_path / 'whole.tar.gz', FILES, 0, 'root'), 'rb') as fh:
        cut.write_bytes(fh.read()[:-30])
    code, result = run(capsys, {'src': str(cut), 'dest': str(tmp_path / 'kit.tar.gz')})
    assert code == 1 and 'cut.tar.gz' in result['msg']
    assert not os.path.exists(str(tmp_path / 'kit.tar.gz'))
