# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # The store sets are copied to. Its suboptions are those of the store option
    # (doc fragment lifeboat.backup._store), word for word: a unit test keeps the two in step.
    DOCUMENTATION = r"""
options:
  dest_store:
    description:
      - The store sets are copied to, with the same suboptions as O(store). Sets keep their
        host, source and set id there, so C(<dest_store>/<host>/<source>/<set_id>/) mirrors the source.
    type: dict
    required: true
    suboptions:
      kind:
        description:
          - The kind of store. V(dir) is a local or mounted directory.
        type: str
        default: dir
        choices: [dir]
      path:
        description:
          - Absolute path of a V(dir) store. Created (mode 0700) on the first backup, but only when
            its parent directory exists, so that nothing is written into the mount point of an
            unmounted disk.
        type: path
      allow_shared:
        description:
          - Kind V(dir) only. Accept a store root that group or others may write to. By default
            such a root is refused, since anyone who can write there could plant sets.
        type: bool
        default: false
"""
