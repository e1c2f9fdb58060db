# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # The file tree a file-tree backup reads (lifeboat.backup._files).
    DOCUMENTATION = r"""
options:
  path:
    description:
      - Absolute path of the directory tree to back up. Its contents are stored relative to it.
      - A missing or unreadable directory fails the task before anything is written.
    type: path
    required: true
  exclude:
    description:
      - Patterns of files and directories to leave out, for example V(*.log) or V(node_modules).
      - A pattern without C(/) matches a name at any depth; C(*) and C(?) are wildcards.
    type: list
    elements: str
    default: []
  one_file_system:
    description:
      - Stay on the file system of O(path); mount points below it are left out.
    type: bool
    default: false
"""
