# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Every kind of store, and the ``store`` option built from their registry.

Importing this module registers each kind; modules call ``store_argument_spec``
and ``open_store`` and never name a kind themselves. The doc fragment
lifeboat.backup._store documents the same options (a unit test keeps the two
in step).
"""

from __future__ import annotations

import copy

from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir  # noqa: F401  pylint: disable=unused-import
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_memory  # noqa: F401  pylint: disable=unused-import
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_s3  # noqa: F401  pylint: disable=unused-import
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_ssh  # noqa: F401  pylint: disable=unused-import
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import StoreError, escape

DEFAULT_KIND = "dir"


def _names(kind):
    """Option name (or alias) -> option name, for one kind."""
    names = {}
    for name, spec in kind.options.items():
        names[name] = name
        for alias in spec.get("aliases") or ():
            names[alias] = name
    return names


def _owners():
    """Which kind defines each store option (aliases included): name -> [(kind, option)]."""
    owners = {}
    for kind in _stores.kinds():
        for alias, name in _names(kind).items():
            owners.setdefault(alias, []).append((kind.name, name))
    return owners


def store_options():
    """The suboptions of ``store``: ``kind`` plus the union of every kind's options."""
    options = {"kind": dict(type="str", default=DEFAULT_KIND, choices=[k.name for k in _stores.kinds()])}
    for kind in _stores.kinds():
        for name, spec in kind.options.items():
            if name in options and options[name] != spec:
                raise StoreError("Store option %s is defined differently by two kinds." % name)
            options[name] = copy.deepcopy(spec)
    return options


def store_option_spec():
    """The spec of one option that names a store: a dict of ``kind`` and that kind's options."""
    return dict(
        type="dict",
        required=True,
        options=store_options(),
        required_if=[("kind", k.name, list(k.required)) for k in _stores.kinds() if k.required],
    )


def store_argument_spec():
    """Options naming a store and a host in it (doc fragment lifeboat.backup._store)."""
    return dict(store=store_option_spec(), host=dict(type="str"))


def dest_store_argument_spec(name="dest_store"):
    """A second store option, ``dest_store`` by default (doc fragment lifeboat.backup._dest_store)."""
    return {name: store_option_spec()}


def open_store(spec, runner=None):
    """Build a store from the ``store`` option (a dict with ``kind`` and that kind's options)."""
    if not isinstance(spec, dict):
        raise StoreError("The store option must be a dictionary such as {kind: dir, path: /var/backups/lifeboat}.")
    kind = _stores.get_kind(spec.get("kind") or DEFAULT_KIND)
    if kind.public:
        owners = _owners()
        known = _names(kind)
        for name, value in spec.items():
            if name == "kind" or value is None or name in known:
                continue
            default = None
            for other, option in owners.get(name, []):
                default = _stores.get_kind(other).options[option].get("default")
            if value == default:
                continue
            raise StoreError("Store option %s applies to store kind %s, not %s; remove it or change kind."
                             % (escape(name, 60), " or ".join(k for k, o in owners.get(name, [("none", name)])),
                                kind.name))
    return kind.factory(spec, runner)
