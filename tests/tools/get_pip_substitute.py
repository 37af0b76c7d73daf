"""Offline stand-in for the get-pip.py that ansible-test downloads.

ansible-test runs its cached get_pip_<version>.py as __main__ with pip's install
arguments (plus --no-setuptools/--no-wheel). This machine cannot reach the host
that serves the real script, so we bootstrap pip from the standard library's
ensurepip and then let that pip install the requested arguments.

ensurepip.bootstrap() deletes every PIP_* variable and points PIP_CONFIG_FILE at
/dev/null inside this process; the environment is saved and restored around it,
or the following pip run would lose the machine's index and CA settings.
"""
import ensurepip
import os
import subprocess
import sys


def main(argv):
    saved = dict(os.environ)
    try:
        ensurepip.bootstrap(upgrade=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    args = [a for a in argv if a not in ('--no-setuptools', '--no-wheel')]
    return subprocess.call([sys.executable, '-m', 'pip', 'install'] + args)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
