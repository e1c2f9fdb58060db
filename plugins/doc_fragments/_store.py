# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # The store that holds backup sets, and the host name sets are filed under.
    DOCUMENTATION = r"""
options:
  store:
    description:
      - Where backup sets live. Sets are laid out as C(<store>/<host>/<source>/<set_id>/) with a
        C(manifest.json) written last; see the collection's docs/manifest.md.
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
  host:
    description:
      - Host name that sets are filed under in the store.
      - Defaults to the short host name of the machine the module runs on;
        roles pass C(inventory_hostname).
    type: str
"""
