# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Let plain ``pytest tests/unit`` import this collection as ``ansible_collections.lifeboat.backup``.

ansible-test does this itself (it runs on a real copy of the collection and loads
its own ``ansible_pytest_collections`` plugin); outside ansible-test this file
builds ``build/pytest/ansible_collections/<namespace>/<name>`` as a symlink to the
repository root, puts ``build/pytest`` on ``sys.path`` and installs ansible-core's
collection finder over it, the way ansible-test's plugin does.

Test modules are imported under the same names ansible-test gives them
(``ansible_collections.lifeboat.backup.tests.unit.plugins.modules.test_x``), so
test files in different folders may share a basename, and pytest's assertion
rewriting still applies to them although ansible's collection loader imports them.

Under ansible-test (which also loads this file, since the collection root is its
``--confcutdir``) it does nothing.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
UNDER_ANSIBLE_TEST = 'ansible_pytest_collections' in os.environ.get('PYTEST_PLUGINS', '')


def _galaxy_name():
    """Return (namespace, name) from galaxy.yml without needing PyYAML."""
    values = {}
    with open(os.path.join(ROOT, 'galaxy.yml'), encoding='utf-8') as galaxy:
        for line in galaxy:
            key, sep, value = line.partition(':')
            if sep and key in ('namespace', 'name'):
                values[key] = value.strip().strip('\'"')
    return values['namespace'], values['name']


def _build_tree():
    """Create (idempotently) the symlink tree and return its collections root."""
    namespace, name = _galaxy_name()
    collections_root = os.path.join(ROOT, 'build', 'pytest')
    ns_dir = os.path.join(collections_root, 'ansible_collections', namespace)
    link = os.path.join(ns_dir, name)
    os.makedirs(ns_dir, exist_ok=True)
    if os.path.islink(link) and os.path.realpath(link) == ROOT:
        return collections_root
    if os.path.islink(link) or os.path.exists(link):
        os.unlink(link)
    try:
        os.symlink(ROOT, link)
    except FileExistsError:  # another xdist worker won the race
        pass
    return collections_root


def _install_collection_finder(collections_root):
    """Install ansible-core's collection loader so ansible_collections.* imports resolve like under ansible."""
    # pylint: disable=import-outside-toplevel
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    _AnsibleCollectionFinder(paths=[collections_root])._install()  # pylint: disable=protected-access


def _name_test_modules_like_ansible_test(collections_root):
    """Import files of this repo as ansible_collections.<ns>.<name>.<dotted path>, via the symlink tree."""
    # pylint: disable=import-outside-toplevel
    from pathlib import Path

    from _pytest import pathlib as _pytest_pathlib

    original = getattr(_pytest_pathlib, 'resolve_pkg_root_and_module_name', None)
    if original is None:  # a pytest without this hook point: keep its default naming
        return
    namespace, name = _galaxy_name()
    prefix = ['ansible_collections', namespace, name]

    def resolve_pkg_root_and_module_name(path, *args, **kwargs):
        try:
            rel = Path(path).resolve().with_suffix('').relative_to(ROOT)
        except ValueError:
            return original(path, *args, **kwargs)
        parts = list(rel.parts)
        if parts and parts[-1] == '__init__':
            parts.pop()
        if not parts or parts == ['conftest']:
            return original(path, *args, **kwargs)
        return Path(collections_root), '.'.join(prefix + parts)

    _pytest_pathlib.resolve_pkg_root_and_module_name = resolve_pkg_root_and_module_name


def _enable_assertion_rewriting():
    """Let pytest rewrite asserts in test modules that ansible's collection loader executes (as ansible-test does)."""
    # pylint: disable=import-outside-toplevel
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionPkgLoaderBase

    hooks = [hook for hook in sys.meta_path
             if type(hook).__module__ + '.' + type(hook).__qualname__ == '_pytest.assertion.rewrite.AssertionRewritingHook']
    if len(hooks) != 1:  # e.g. --assert=plain
        return
    rewriter = hooks[0]

    def exec_module(self, module):
        if self._redirect_module:  # pylint: disable=protected-access
            return
        code_obj = self.get_code(self._fullname)  # pylint: disable=protected-access
        if code_obj is None:
            return
        package = self._package_to_load  # pylint: disable=protected-access
        if package == 'conftest' or package.startswith('test_'):
            rewriter.exec_module(module)
        else:
            exec(code_obj, module.__dict__)  # pylint: disable=exec-used

    _AnsibleCollectionPkgLoaderBase.exec_module = exec_module


if not UNDER_ANSIBLE_TEST:
    COLLECTIONS_ROOT = _build_tree()
    if COLLECTIONS_ROOT not in sys.path:
        sys.path.insert(0, COLLECTIONS_ROOT)
    os.environ.setdefault('ANSIBLE_COLLECTIONS_PATH', COLLECTIONS_ROOT)
    _install_collection_finder(COLLECTIONS_ROOT)
    _name_test_modules_like_ansible_test(COLLECTIONS_ROOT)
    _enable_assertion_rewriting()


def pytest_ignore_collect(collection_path, config):  # pylint: disable=unused-argument
    """Never collect tests from build trees, venvs or ansible-test output."""
    rel = os.path.relpath(str(collection_path), ROOT)
    top = rel.split(os.sep, 1)[0]
    if top in ('build', 'collections', '.venv') or rel.startswith(os.path.join('tests', 'output')):
        return True
    return None
