# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # The age identity options of restore modules (_jobs.restore_argument_spec).
    DOCUMENTATION = r"""
options:
  age_identity:
    description:
      - age identity (private key, C(AGE-SECRET-KEY-1...)) of an encrypted set. Keep it in Ansible Vault.
      - C(age -i) reads it from an in-memory file (a C(memfd), handed over as C(/dev/fd/N)); it is never
        written to disk and never appears in argv, results or logs.
    type: str
  age_identity_file:
    description:
      - File holding the age identity; alternative to O(age_identity).
    type: path
"""
