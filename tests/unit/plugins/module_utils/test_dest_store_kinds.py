# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The dest_store option is the store option under another name, and its doc fragment says so word for word."""

from __future__ import annotations

import yaml

from ansible_collections.lifeboat.backup.plugins.doc_fragments import _dest_store
from ansible_collections.lifeboat.backup.plugins.doc_fragments import _store
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds


def documented(fragment, option):
    return yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"][option]


def test_dest_store_fragment_documents_every_store_option():
    suboptions = documented(_dest_store, "dest_store")["suboptions"]
    spec = _store_kinds.store_options()
    assert sorted(suboptions) == sorted(spec)
    for name, option in spec.items():
        assert suboptions[name]["type"] == option["type"], name
        assert suboptions[name].get("default") == option.get("default"), name
        assert suboptions[name].get("choices") == option.get("choices"), name


def test_dest_store_fragment_keeps_the_store_fragment_text():
    dest, store = documented(_dest_store, "dest_store"), documented(_store, "store")
    assert dest["suboptions"] == store["suboptions"]
    assert (dest["type"], dest["required"]) == (store["type"], store["required"])


def test_dest_store_option_is_the_store_option_under_another_name():
    spec = _store_kinds.dest_store_argument_spec()
    assert list(spec) == ["dest_store"]
    assert spec["dest_store"] == _store_kinds.store_argument_spec()["store"]
    assert list(_store_kinds.dest_store_argument_spec("mirror")) == ["mirror"]
