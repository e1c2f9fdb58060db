# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.lifeboat.backup.plugins.doc_fragments._store import store_suboptions


class ModuleDocFragment(object):
    # The store sets are copied to. Its suboptions are those of the store option, taken from
    # the doc fragment lifeboat.backup._store.
    DOCUMENTATION = r"""
options:
  dest_store:
    description:
      - The store sets are copied to, with the same suboptions as O(store). Sets keep their
        host, source and set id there, so C(<dest_store>/<host>/<source>/<set_id>/) mirrors the source.
    type: dict
    required: true
    suboptions:
""" + store_suboptions('dest_store', 6)
