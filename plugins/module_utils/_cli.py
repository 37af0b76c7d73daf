# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way Ferry runs external commands: a :class:`Runner` taking argv lists.

Always an argv list, never a shell string, so nothing a spec or inventory holds
is ever interpreted by a shell. ``Runner(module)`` runs through
``AnsibleModule.run_command`` (so Ansible logs and environment apply);
``Runner()`` uses the standard library (controller code, tests). Clients of a
CLI (``ctr``, ``ssh-keygen``, later ``kubectl`` and ``systemctl``) take a
runner. A leaf: standard library only, no Ferry imports; Python 3.6+.
"""

import errno
import subprocess
import tempfile


class Runner(object):
    """Runs argv lists; ``run`` returns ``(rc, stdout, stderr)`` as text, ``stream`` feeds stdin from chunks."""

    def __init__(self, module=None):
        self.module = module

    def run(self, argv, data=None, cwd=None, check_rc=False):
        """Run ``argv``; ``data`` (str or bytes) goes to stdin exactly as given.

        A command that cannot be started gives rc 127. With ``check_rc`` and a module, a
        non-zero exit calls ``module.fail_json`` with the command, its exit code and both streams.
        """
        argv = _argv(argv)
        if self.module is None:
            return _local(argv, data, cwd)
        kwargs = dict(check_rc=False, cwd=cwd)
        if data is not None:
            kwargs['data'] = data
            # run_command appends a newline to data unless told not to; signatures
            # and hashes are computed over the exact bytes.
            kwargs['binary_data'] = True
        rc, out, err = self.module.run_command(argv, **kwargs)
        out, err = _text(out), _text(err)
        if check_rc and rc != 0:
            reason = (err or out or '').strip()
            self.module.fail_json(
                msg='Command %s failed with exit code %d%s' % (argv[0], rc, (': ' + reason) if reason else ''),
                cmd=argv, rc=rc, stdout=out, stderr=err,
            )
        return rc, out, err

    def stream(self, argv, chunks, cwd=None, timeout=120):
        """Run ``argv`` feeding its stdin from ``chunks`` (an iterable of bytes): see :func:`run_stream`."""
        return run_stream(argv, chunks, cwd=cwd, timeout=timeout)


def _argv(argv):
    if not isinstance(argv, (list, tuple)) or not argv:
        raise TypeError('argv must be a non-empty list, got %r' % (argv,))
    return [str(a) for a in argv]


def _text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value


def _local(argv, data, cwd):
    if isinstance(data, str):
        data = data.encode('utf-8')
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd)
    except OSError as e:
        return 127, '', 'cannot run %s: %s' % (argv[0], e)
    out, err = proc.communicate(data if data is not None else b'')
    return proc.returncode, _text(out), _text(err)


def run_stream(argv, chunks, cwd=None, timeout=120):
    """Run ``argv`` feeding its stdin from ``chunks`` (an iterable of bytes); returns ``(rc, stdout, stderr)``.

    Nothing is buffered beyond one chunk: the data goes straight into the command's stdin pipe
    (stdout and stderr go to anonymous temporary files, so a chatty command cannot block the
    writer). A command that exits early stops the feeding (its rc and stderr tell why). When
    iterating ``chunks`` raises, stdin is closed at once so the command sees a truncated stream,
    the command is waited for (killed after ``timeout`` seconds) and the exception is re-raised.
    """
    argv = _argv(argv)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=cwd)
        except OSError as e:
            return 127, '', 'cannot run %s: %s' % (argv[0], e)
        try:
            for chunk in chunks:
                try:
                    proc.stdin.write(chunk)
                except (IOError, OSError) as e:
                    if e.errno != errno.EPIPE:
                        raise
                    break
        except BaseException:
            _close_quietly(proc.stdin)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            close = getattr(chunks, 'close', None)
            if close is not None:
                close()
        _close_quietly(proc.stdin)
        rc = proc.wait()
        out.seek(0)
        err.seek(0)
        return rc, _text(out.read()), _text(err.read())


def _close_quietly(stream):
    try:
        stream.close()
    except (IOError, OSError):
        pass
