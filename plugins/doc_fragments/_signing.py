# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # Signing the manifests a module writes (lifeboat.backup._signing).
    DOCUMENTATION = r"""
options:
  sign_key:
    description:
      - An OpenSSH ed25519 private key (the text of the file C(ssh-keygen -t ed25519 -N '') writes)
        that signs the manifest of each set this module writes, with C(ssh-keygen -Y sign) under the
        namespace C(lifeboat.backup/manifest@v1).
      - Give each host its own key, so that a host that can write to a shared store cannot forge
        another host's sets. Keep it in Ansible Vault.
      - The key must not have a passphrase (nothing can prompt for one); only ed25519 keys are accepted.
      - The key reaches C(ssh-keygen) through an in-memory file descriptor; it never appears in a
        command line, a result or a file on disk.
      - Mutually exclusive with O(sign_key_file).
    type: str
  sign_key_file:
    description:
      - Path, on the managed host, of the private key described in O(sign_key).
      - The file must be a regular file readable by its owner only (mode 0600).
      - Mutually exclusive with O(sign_key).
    type: path
notes:
  - Signing is described in the collection's docs/security.md (section Signed manifests).
"""

    # Checking the signatures of the sets a module reads (lifeboat.backup._signing.trust).
    TRUST = r"""
options:
  trusted_signers:
    description:
      - The keys allowed to sign sets, as C(allowed_signers) lines (the ALLOWED SIGNERS section of the ssh-keygen manual) of the form
        C(<host>[,<host>...] [options] ssh-ed25519 <base64> [comment]), one line per host, where
        C(<host>) is the host name the host's sets are filed under in the store.
      - Give a YAML list (Ansible would split a single string at its commas). An element may hold
        several lines. Blank lines and lines starting with C(#) are skipped.
      - Supported options are C(namespaces="..."), C(valid-after="...") and C(valid-before="...")
        (checked at the time of verification); C(cert-authority), host name patterns and key types
        other than C(ssh-ed25519) are refused, naming the line.
      - When set, every set must carry a signature by a key listed for its own host. A set that is
        unsigned, signed by a key not listed, signed by another host's key, or altered after
        signing is refused, and the error names the reason.
      - Several lines for one host are allowed, for key rotation.
      - When neither this nor O(trusted_signers_file) is set, signatures are not checked.
      - Mutually exclusive with O(trusted_signers_file).
    type: list
    elements: str
  trusted_signers_file:
    description:
      - Path, on the managed host, of an C(allowed_signers) file with the lines described in
        O(trusted_signers).
      - Mutually exclusive with O(trusted_signers).
    type: path
notes:
  - Signature checks are described in the collection's docs/security.md (section Signed manifests).
"""
