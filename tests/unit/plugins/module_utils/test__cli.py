# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import sys

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.ferry.airgap.plugins.module_utils import _cli


@pytest.fixture
def module():
    with patch_module_args({}):
        yield AnsibleModule(argument_spec={})


def test_run_returns_text_and_feeds_exact_bytes(module):
    rc, out, err = _cli.Runner(module).run([sys.executable, '-c', 'import sys; d = sys.stdin.buffer.read(); '
                                            'print(repr(d)); sys.stderr.write("e")'], data=b'no newline')
    assert rc == 0 and out.strip() == "b'no newline'" and err == 'e'


def test_run_never_uses_a_shell(module):
    rc, out, _err = _cli.Runner(module).run([sys.executable, '-c', 'import sys; print(sys.argv[1])', '$(id); echo hi'])
    assert out.strip() == '$(id); echo hi'
    with pytest.raises(TypeError):
        _cli.Runner(module).run('echo hi')


def test_run_failure_reports_cmd_rc_and_streams(module, capsys):
    argv = [sys.executable, '-c', 'import sys; print("out"); sys.stderr.write("broken\\n"); sys.exit(3)']
    with pytest.raises(SystemExit) as exc:
        _cli.Runner(module).run(argv, check_rc=True)
    assert exc.value.code == 1
    result = json.loads(capsys.readouterr().out)
    assert result['failed'] and result['rc'] == 3 and result['cmd'] == argv
    assert result['stdout'] == 'out\n' and result['stderr'] == 'broken\n'
    assert 'exit code 3' in result['msg'] and 'broken' in result['msg']


def test_run_without_check_rc_returns(module):
    rc, _out, _err = _cli.Runner(module).run([sys.executable, '-c', 'raise SystemExit(2)'])
    assert rc == 2


def test_local_runner(tmp_path):
    rc, out, err = _cli.Runner().run([sys.executable, '-c', 'import os, sys; print(os.getcwd()); '
                                     'print(sys.stdin.read())'], data='in', cwd=str(tmp_path))
    assert rc == 0 and out.splitlines() == [str(tmp_path), 'in'] and err == ''
    rc, _out, err = _cli.Runner().run([str(tmp_path / 'missing-binary')])
    assert rc == 127 and 'cannot run' in err


def test_local_runner_never_uses_a_shell():
    rc, out, _err = _cli.Runner().run([sys.executable, '-c', 'import sys; print(sys.argv[1])', '$(id); echo hi'])
    assert rc == 0 and out.strip() == '$(id); echo hi'
    with pytest.raises(TypeError):
        _cli.Runner().run('echo hi')


def test_runner_stream_feeds_stdin():
    rc, out, _err = _cli.Runner().stream(['wc', '-c'], iter([b'ab', b'cde']))
    assert rc == 0 and out.strip() == '5'
