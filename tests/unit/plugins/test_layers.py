# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The layers of plugins/module_utils, and what each module ships to a host, read from the import statements.

Leaves import no Ferry code; the OCI store imports leaves; what Ferry drives by CLI (_runtime) imports
leaves and the store; the bundle format imports all of those. A module that runs on every host carries
only what it uses: pulling files needs no signing, packing or registry client; loading images needs no
archive importer, registry client or bundle code.
"""

import ast
import os

import pytest

TOP = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'plugins')
PREFIX = 'ansible_collections.ferry.airgap.plugins.module_utils'
LEAVES = ('_fs', '_digest', '_platform', '_cli', '_safetar')
# package -> the packages (and leaves) it may import
ALLOWED = {
    '_hostinfo': ('_platform',),
    '_oci': LEAVES + ('_oci',),
    '_runtime': LEAVES + ('_oci', '_runtime'),
    '_bundle': LEAVES + ('_oci', '_runtime', '_bundle'),
}


def _file_of(dotted):
    """plugins/module_utils path of ``_oci.store`` (a module or a package's __init__)."""
    base = os.path.join(TOP, 'module_utils', *dotted.split('.'))
    return base + '.py' if os.path.isfile(base + '.py') else os.path.join(base, '__init__.py')


def ferry_imports(path):
    """Dotted names (relative to module_utils) of the Ferry module_utils ``path`` imports."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            rest = node.module[len(PREFIX):].lstrip('.')
            if rest:
                found.add(rest)
            else:  # from ...module_utils import _cli
                found.update(alias.name for alias in node.names)
            for alias in node.names:  # from ..._bundle import serve
                if rest and os.path.isfile(_file_of(rest + '.' + alias.name)):
                    found.add(rest + '.' + alias.name)
    return found


def closure(module):
    """Every Ferry module_util a module (plugins/modules/<module>.py) carries to the host."""
    todo = list(ferry_imports(os.path.join(TOP, 'modules', module + '.py')))
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(ferry_imports(_file_of(name)))
    return seen


def module_utils():
    root = os.path.join(TOP, 'module_utils')
    for dirpath, dummy, names in os.walk(root):
        for name in names:
            if name.endswith('.py') and name != '__init__.py':
                rel = os.path.relpath(os.path.join(dirpath, name), root)[:-3]
                yield rel.replace(os.sep, '.')


@pytest.mark.parametrize('name', sorted(module_utils()))
def test_each_module_util_imports_only_its_layer_and_below(name):
    top = name.split('.')[0]
    allowed = () if top in LEAVES else ALLOWED[top]
    bad = sorted(i for i in ferry_imports(_file_of(name)) if i.split('.')[0] not in allowed)
    assert bad == [], '%s imports %s, outside its layer (allowed: %s)' % (name, bad, allowed or 'no Ferry code')


def test_bundle_pull_carries_no_signing_packing_or_registry():
    carried = closure('bundle_pull')
    assert '_bundle.pull' in carried
    assert not carried & {'_bundle.sign', '_bundle.pack', '_bundle.delta', '_bundle.spec', '_bundle.verify',
                          '_oci.registry', '_oci.archive', '_oci.store', '_cli', '_safetar'}, sorted(carried)


def test_image_load_carries_no_importer_registry_or_bundle_code():
    carried = closure('image_load')
    assert {'_oci.store', '_runtime.load', '_runtime.containerd', '_cli'} <= carried
    assert not [name for name in carried if name.startswith('_bundle') or name in (
        '_oci.registry', '_oci.archive', '_oci.sync', '_oci.copy', '_oci.compress', '_safetar')], sorted(carried)


def test_zstandard_is_imported_lazily_and_only_by_the_build_side():
    """zstandard is no dependency of hosts: one lazy import, in _oci.compress, which no host module carries."""
    found = []
    for dirpath, dummy, names in os.walk(TOP):
        for name in names:
            if not name.endswith('.py'):
                continue
            path = os.path.join(dirpath, name)
            with open(path) as handle:
                tree = ast.parse(handle.read(), path)
            for node in ast.walk(tree):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) else [])
                if any((m or '').split('.')[0] == 'zstandard' for m in mods):
                    found.append((os.path.relpath(path, TOP), node.col_offset > 0))
    assert found and all(path == os.path.join('module_utils', '_oci', 'compress.py') for path, dummy in found), found
    assert all(indented for dummy, indented in found), 'zstandard must be imported inside a function: %s' % found
    for module in ('image_load', 'bundle_pull', 'bundle_verify', 'host_facts'):
        assert '_oci.compress' not in closure(module), module


def test_the_closure_reader_sees_package_imports():
    """The reader itself: ``from ..._bundle import serve as S`` counts as _bundle.serve."""
    assert '_bundle.serve' in closure('bundle_serve')
