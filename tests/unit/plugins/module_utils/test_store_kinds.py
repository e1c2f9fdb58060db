# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The store option is built from the registry of kinds and documented by one fragment."""

from __future__ import annotations

import yaml

from ansible_collections.lifeboat.backup.plugins.doc_fragments._store import ModuleDocFragment
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores


def test_doc_fragment_documents_every_store_option():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["store"]["suboptions"]
    spec = _store_kinds.store_options()
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name].get("choices") == option.get("choices"), name


def test_memory_kind_is_not_offered():
    assert "memory" not in _store_kinds.store_options()["kind"]["choices"]
    assert "memory" in [k.name for k in _stores.kinds(public_only=False)]


def test_every_public_kind_is_a_store():
    for kind in _stores.kinds():
        assert issubclass(kind.factory, _stores.Store)
        assert kind.factory.kind == kind.name


def test_doc_fragment_documents_aliases_and_secrets():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["store"]["suboptions"]
    for name, option in _store_kinds.store_options().items():
        assert sorted(documented[name].get("aliases") or []) == sorted(option.get("aliases") or []), name
    owners = {}
    for kind in _stores.kinds():
        for name in kind.options:
            owners.setdefault(name, set()).add(kind.name)
    for name, kinds in owners.items():
        if len(kinds) == 1:
            # An option of one kind says so first, so a reader of one kind can skip the others'.
            assert documented[name]["description"][0].startswith("Kind V(%s) only." % min(kinds)), name


def test_secret_store_options_are_no_log():
    options = _store_kinds.store_options()
    for name in ("access_key", "secret_key", "session_token", "profile"):
        assert options[name]["no_log"] is True, name
