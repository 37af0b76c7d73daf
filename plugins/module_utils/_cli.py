# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way Ferry modules run external commands.

Always an argv list, never a shell string, so nothing a spec or inventory holds
is ever interpreted by a shell. Standard library + ansible.module_utils only;
runs on target hosts with Python 3.6+.
"""


def _text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value


def run(module, argv, data=None, check_rc=True, cwd=None):
    """Run ``argv`` (a list) through ``module.run_command``.

    ``data`` is fed to the command's stdin (str or bytes). Returns
    ``(rc, stdout, stderr)`` as text. With ``check_rc`` a non-zero exit calls
    ``module.fail_json`` with the command, its exit code and both streams.
    """
    if not isinstance(argv, (list, tuple)) or not argv:
        raise TypeError('argv must be a non-empty list, got %r' % (argv,))
    argv = [str(a) for a in argv]
    kwargs = dict(check_rc=False, cwd=cwd)
    if data is not None:
        kwargs['data'] = data
        # run_command appends a newline to data unless told not to; signatures
        # and hashes are computed over the exact bytes.
        kwargs['binary_data'] = True
    rc, out, err = module.run_command(argv, **kwargs)
    out, err = _text(out), _text(err)
    if check_rc and rc != 0:
        reason = (err or out or '').strip()
        module.fail_json(
            msg='Command %s failed with exit code %d%s' % (argv[0], rc, (': ' + reason) if reason else ''),
            cmd=argv, rc=rc, stdout=out, stderr=err,
        )
    return rc, out, err


def local_runner(argv, data=None, cwd=None):
    """Run ``argv`` with the standard library; same return shape as :func:`run`.

    For controller-side code and tests that have no AnsibleModule. Never raises
    on a non-zero exit: the caller decides.
    """
    import subprocess
    if not isinstance(argv, (list, tuple)) or not argv:
        raise TypeError('argv must be a non-empty list, got %r' % (argv,))
    if isinstance(data, str):
        data = data.encode('utf-8')
    try:
        proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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
    import errno
    import subprocess
    import tempfile
    if not isinstance(argv, (list, tuple)) or not argv:
        raise TypeError('argv must be a non-empty list, got %r' % (argv,))
    argv = [str(a) for a in argv]
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
