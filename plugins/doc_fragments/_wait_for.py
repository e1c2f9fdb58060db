# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.lifeboat.backup.plugins.doc_fragments._store import store_suboptions


class ModuleDocFragment(object):
    # Stores that must hold a source's newest set before retention deletes anything of it. Their
    # suboptions are those of the store option, taken from the doc fragment lifeboat.backup._store.
    DOCUMENTATION = r"""
options:
  wait_for:
    description:
      - Other stores, each with the same suboptions as O(store), that the newest set of a source must have
        reached before anything of that source is deleted here; for example the offsite bucket that
        M(lifeboat.backup.backup_copy) fills. A store that cannot be read counts as not reached.
    type: list
    elements: dict
    default: []
    suboptions:
""" + store_suboptions('wait_for', 6) + r"""  host:
    description:
      - Host name that sets are filed under in the store.
      - Defaults to the short host name of the machine the module runs on;
        roles pass C(inventory_hostname).
    type: str
"""
