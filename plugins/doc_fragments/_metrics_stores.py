# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.lifeboat.backup.plugins.doc_fragments._store import store_suboptions


class ModuleDocFragment(object):
    # The three stores of the 3-2-1 job, by role. Each role's suboptions are those of the store
    # option, taken from the doc fragment lifeboat.backup._store (O(store.X) written O(stores.<role>.X)).
    DOCUMENTATION = r"""
options:
  stores:
    description:
      - The stores of the 3-2-1 job by role. For each source, the module reads what each store
        holds of it (set names and manifests) to report the age of the newest copy and the store usage.
      - A store that cannot be read gives an error in RV(errors) and a C(lifeboat_backup_store_read_error)
        sample; it never stops the other metrics from being written.
    type: dict
    suboptions:
      primary:
        description:
          - The first copy, usually a local O(stores.primary.kind=dir) store.
          - The same suboptions as the C(store) option of the other modules of the collection.
        type: dict
        required: true
        suboptions:
""" + store_suboptions('stores.primary', 10) + r"""      secondary:
        description:
          - The second medium (another disk or mount, or an V(ssh) store on a backup server).
          - The same suboptions as the C(store) option of the other modules of the collection.
        type: dict
        suboptions:
""" + store_suboptions('stores.secondary', 10) + r"""      offsite:
        description:
          - The offsite copy, usually an V(s3) bucket in another region.
          - The same suboptions as the C(store) option of the other modules of the collection.
        type: dict
        suboptions:
""" + store_suboptions('stores.offsite', 10) + r""""""
