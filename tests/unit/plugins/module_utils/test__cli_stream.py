# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_cli.run_stream: feeding a command's stdin from a generator."""

import os

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._cli import run_stream


def test_feeds_every_chunk():
    chunks = [os.urandom(1024 * 1024) for dummy in range(3)]
    rc, out, err = run_stream(['sha256sum'], iter(chunks))
    import hashlib
    assert (rc, err) == (0, '')
    assert out.split()[0] == hashlib.sha256(b''.join(chunks)).hexdigest()


def test_command_that_stops_reading_ends_the_feed():
    produced = []

    def chunks():
        for dummy in range(200):
            produced.append(1)
            yield b'x' * 65536

    rc, out, err = run_stream(['head', '-c', '10'], chunks())
    assert rc == 0 and out == 'x' * 10
    assert len(produced) < 200  # stopped feeding once the pipe broke


def test_generator_error_truncates_the_stream_and_is_raised(tmp_path):
    target = tmp_path / 'got'

    def chunks():
        yield b'a' * 1000
        raise ValueError('bad blob')

    with pytest.raises(ValueError, match='bad blob'):
        run_stream(['sh', '-c', 'cat > "$1"', 'sh', str(target)], chunks())
    assert target.read_bytes() == b'a' * 1000  # the command saw the stream end early, and was waited for


def test_missing_command():
    rc, out, err = run_stream(['/nonexistent/ferry-cmd'], iter([b'x']))
    assert rc == 127 and 'cannot run /nonexistent/ferry-cmd' in err


def test_failing_command_output():
    rc, out, err = run_stream(['sh', '-c', 'cat >/dev/null; echo oops >&2; exit 3'], iter([b'data']))
    assert (rc, out, err) == (3, '', 'oops\n')
