# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kinds the store contract suite runs against, each with a way to tamper with a stored file.

A factory returns ``(store, tamper)``: ``tamper(host, source, set_id, name, data)``
replaces a stored file's bytes behind the store's back, as an attacker with
write access to the store would.
"""

from __future__ import annotations

import os
import uuid

from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds


def dir_store(tmp_path):
    store = _store_kinds.open_store({"kind": "dir", "path": str(tmp_path / "store")})

    def tamper(host, source, set_id, name, data):
        path = os.path.join(store.location(host, source, set_id), name)
        with open(path, "wb") as handle:
            handle.write(data)
    return store, tamper


def memory_store(tmp_path):
    name = uuid.uuid4().hex
    store = _store_kinds.open_store({"kind": "memory", "name": name})

    def tamper(host, source, set_id, file_name, data):
        store.space["sets"][(host, source)][set_id][file_name] = data
    return store, tamper


# kind name -> factory(tmp_path); other kinds add themselves here (see conftest.py).
FACTORIES = {"dir": dir_store, "memory": memory_store}
