"""What AnsiballZ ships to a host for each module: payload bytes and the module_utils files it carries.

Runs each module once against localhost with ANSIBLE_KEEP_REMOTE_FILES=1 (arguments that make it
fail fast: only the payload matters), opens the kept AnsiballZ wrapper, decodes its zip and lists it.
With --against DIR (another checkout, e.g. a git worktree of an older commit) the same modules are
measured there too and the ratio is printed: this checkout's bytes / the other's.

    .venv/bin/python bench/ansiballz.py image_load bundle_pull
    .venv/bin/python bench/ansiballz.py --against /tmp/old image_load bundle_pull=artifact_fetch
"""

import argparse
import base64
import glob
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(checkout, module):
    """(zip bytes, bytes of Ferry module_utils source, [module_utils paths]) of ``module`` as AnsiballZ ships it from ``checkout``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, ANSIBLE_KEEP_REMOTE_FILES='1', ANSIBLE_REMOTE_TMP=tmp, ANSIBLE_LOCAL_TMP=tmp,
                   ANSIBLE_COLLECTIONS_PATH=os.path.join(checkout, '.collections'), ANSIBLE_NOCOLOR='1')
        ansible = os.path.join(os.path.dirname(sys.executable), 'ansible')
        subprocess.run([ansible, 'localhost', '-c', 'local', '-m', 'ferry.airgap.' + module, '-a',
                        'nonexistent_option_for_size=1'], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=checkout, check=False)
        wrappers = glob.glob(os.path.join(tmp, '**', 'AnsiballZ_%s.py' % module), recursive=True)
        if not wrappers:
            raise SystemExit('no AnsiballZ wrapper kept for %s in %s' % (module, checkout))
        with open(wrappers[0]) as handle:
            text = handle.read()
    blob = re.search(r"zip_data='([A-Za-z0-9+/=]+)'", text)
    if blob is None:
        raise SystemExit('no zip_data in the AnsiballZ wrapper of %s: the wrapper format changed' % module)
    data = base64.b64decode(blob.group(1))
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    ferry = [i for i in infos if '/ferry/airgap/plugins/module_utils/' in i.filename and i.filename.endswith('.py')]
    utils = sorted(i.filename.split('plugins/module_utils/', 1)[1] for i in ferry)
    return len(data), sum(i.file_size for i in ferry), utils


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--against', help='another checkout to compare with')
    parser.add_argument('modules', nargs='+', help='module names; NEW=OLD when the module was renamed')
    args = parser.parse_args()
    for spec in args.modules:
        new, dummy, old = spec.partition('=')
        size, wrapper, utils = measure(TOP, new)
        print('%-14s %8d bytes zipped, %6d bytes of %2d Ferry module_utils: %s' % (
            new, size, wrapper, len(utils), ' '.join(utils)))
        if args.against:
            osize, owrapper, outils = measure(args.against, old or new)
            print('%-14s %8d bytes zipped, %6d bytes of %2d Ferry module_utils: %s   [%s]' % (
                old or new, osize, owrapper, len(outils), ' '.join(outils), args.against))
            print('%-14s ratio new/old: %.2f (zipped payload), %.2f (Ferry module_utils source)' % (
                new, size / osize, wrapper / owrapper))


if __name__ == '__main__':
    main()
