# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # Compression and public-key encryption of payload files, shared by backup modules.
    DOCUMENTATION = r"""
options:
  compression:
    description:
      - Compression of payload files. V(zstd) runs multi-threaded; V(gzip) uses C(pigz) when installed.
    type: str
    default: zstd
    choices: [zstd, gzip, none]
  compression_level:
    description:
      - Compression level (zstd 1-22, gzip 1-9). The tool's default when unset.
    type: int
  compression_threads:
    description:
      - Compression threads; V(0) uses every core (zstd C(-T0)).
    type: int
    default: 0
  encrypt_recipients:
    description:
      - age public keys (C(age1...)) or SSH public keys to encrypt payload files to.
      - The host needs only public keys, so it can write backups it cannot read. The matching
        identity (private key) is needed only to restore.
      - The manifest records SHA-256 fingerprints of the recipients, not the keys.
    type: list
    elements: str
    default: []
"""
