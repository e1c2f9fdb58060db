# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # Attributes of modules that only read a store.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: Read-only; check mode gives the same answer.
  diff_mode:
    support: none
    description: Nothing to diff; the result describes the sets.
  idempotent:
    support: full
    description: Never changes anything.
"""
