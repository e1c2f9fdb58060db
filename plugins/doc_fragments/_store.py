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
        C(manifest.json) written last; see the collection's docs/stores.md and docs/manifest.md.
    type: dict
    required: true
    suboptions:
      kind:
        description:
          - The kind of store. V(dir) is a local or mounted directory. V(s3) is a bucket on AWS S3
            or any S3-compatible service (the offsite copy); it needs the Python libraries
            C(boto3) and C(botocore) on the host that talks to the store. V(ssh) is a directory on a
            backup server reached over SSH (the same layout as V(dir)); it needs the C(ssh) client
            on the host that talks to the store and C(python3) on the backup server.
        type: str
        default: dir
        choices: [dir, s3, ssh]
      path:
        description:
          - Absolute path of the store. Required with O(store.kind=dir) and O(store.kind=ssh).
          - With O(store.kind=ssh), a path on the backup server.
          - Created (mode 0700) on the first backup, but only when its parent directory exists,
            so that nothing is written into the mount point of an unmounted disk.
        type: path
      allow_shared:
        description:
          - Kinds V(dir) and V(ssh). Accept a store root that group or others may write to. By default
            such a root is refused, since anyone who can write there could plant sets.
        type: bool
        default: false
      bucket:
        description:
          - Kind V(s3) only. Name of an existing bucket. Required with O(store.kind=s3).
          - Sets are stored as C(<prefix>/<host>/<source>/<set_id>/<file>); the manifest is written
            last, and a set id prefix without a manifest is never taken for a set.
        type: str
      prefix:
        description:
          - Kind V(s3) only. Key prefix the store lives under, like C(backups/lifeboat). Leading and
            trailing slashes are ignored. By default the store starts at the top of the bucket.
        type: str
      access_key:
        description:
          - Kind V(s3) only. AWS access key ID.
          - When unset, the environment variables E(AWS_ACCESS_KEY_ID) or E(AWS_ACCESS_KEY) are used,
            else boto3's own chain (profile, instance role...).
          - Mutually exclusive with O(store.profile).
        type: str
        aliases: [aws_access_key_id, aws_access_key]
      secret_key:
        description:
          - Kind V(s3) only. AWS secret access key.
          - When unset, E(AWS_SECRET_ACCESS_KEY) or E(AWS_SECRET_KEY) are used.
        type: str
        aliases: [aws_secret_access_key, aws_secret_key]
      session_token:
        description:
          - Kind V(s3) only. AWS STS session token, for temporary credentials.
          - When unset, E(AWS_SESSION_TOKEN) is used.
        type: str
        aliases: [aws_session_token]
      profile:
        description:
          - Kind V(s3) only. A named profile from C(~/.aws/config) or C(~/.aws/credentials) on the
            host that talks to the store.
          - When unset and no keys are given, E(AWS_PROFILE) or E(AWS_DEFAULT_PROFILE) are used.
        type: str
        aliases: [aws_profile]
      region:
        description:
          - Kind V(s3) only. The AWS region of the bucket.
          - When unset, E(AWS_REGION) or E(AWS_DEFAULT_REGION) are used, else the profile's region.
        type: str
        aliases: [aws_region]
      endpoint_url:
        description:
          - Kind V(s3) only. URL of an S3-compatible service to use instead of AWS, like
            V(https://minio.example.com:9000). Requests then use path-style addressing.
          - When unset, E(AWS_URL) is used.
        type: str
        aliases: [aws_endpoint_url]
      aws_ca_bundle:
        description:
          - Kind V(s3) only. A CA bundle to verify the endpoint's TLS certificate with.
          - When unset, E(AWS_CA_BUNDLE) is used.
        type: path
      validate_certs:
        description:
          - Kind V(s3) only. Verify the endpoint's TLS certificate. Prefer O(store.aws_ca_bundle) to
            turning this off.
        type: bool
        default: true
      max_attempts:
        description:
          - Kind V(s3) only. How many times a request is tried in all (botocore's standard retry
            mode, with backoff) before the run fails.
        type: int
        default: 5
      storage_class:
        description:
          - Kind V(s3) only. Storage class of payload files and objects, like V(STANDARD_IA),
            V(GLACIER_IR) or V(INTELLIGENT_TIERING). The bucket's default when unset.
          - Manifests, the lock and run markers keep the default class, so the catalog stays
            readable. Payloads in V(GLACIER) or V(DEEP_ARCHIVE) must be restored before a restore
            or verify can read them.
        type: str
      sse:
        description:
          - Kind V(s3) only. Server-side encryption of every object the store writes, either
            V(AES256) (SSE-S3) or V(aws:kms) / V(aws:kms:dsse) (SSE-KMS). The bucket's default
            when unset.
        type: str
        choices: [AES256, "aws:kms", "aws:kms:dsse"]
      kms_key_id:
        description:
          - Kind V(s3) only. The KMS key (ID, ARN or alias) for O(store.sse=aws:kms); the account's
            default S3 key when unset.
        type: str
      tags:
        description:
          - Kind V(s3) only. Tags put on every object the store writes (at most 10). Writing them
            needs the C(s3:PutObjectTagging) permission.
        type: dict
      part_size:
        description:
          - Kind V(s3) only. Size of one multipart upload part, in MiB (5 to 5120). Memory used by an
            upload is about one part. A payload may have at most 10,000 parts, so the default
            allows payloads up to about 156 GiB; raise it for larger ones.
        type: int
        default: 16
      object_lock_mode:
        description:
          - Kind V(s3) only. S3 Object Lock retention mode for payloads, manifests and objects
            (V(GOVERNANCE) or V(COMPLIANCE)). Needs a bucket created with Object Lock enabled, and
            O(store.object_lock_days).
          - Deleting a locked set only hides it (a delete marker); its versions stay until the
            retention ends.
        type: str
        choices: [GOVERNANCE, COMPLIANCE]
      object_lock_days:
        description:
          - Kind V(s3) only. Days each object written is retained under O(store.object_lock_mode).
        type: int
      host:
        description:
          - Kind V(ssh) only. Host name or IP address of the backup server. Required with
            O(store.kind=ssh).
          - Not to be confused with O(host), the name sets are filed under.
        type: str
      user:
        description:
          - Kind V(ssh) only. The user to log in as on the backup server. The user of the module's
            process when unset.
        type: str
      port:
        description:
          - Kind V(ssh) only. The SSH port of the backup server.
        type: int
        default: 22
      private_key:
        description:
          - Kind V(ssh) only. The private key to log in with, as text (for example from a vault).
          - It never appears on a command line; ssh reads it from an in-memory file of this process
            (or a 0600 file removed afterwards). Keys with a passphrase cannot be used, since
            nothing may prompt.
          - Mutually exclusive with O(store.private_key_file). Without either, ssh uses the
            user's agent and default keys.
        type: str
      private_key_file:
        description:
          - Kind V(ssh) only. Path of the private key file to log in with, on the host that talks
            to the store.
        type: path
      known_hosts:
        description:
          - Kind V(ssh) only. The server's host keys, either as the path of a known_hosts file or
            as known_hosts lines (like C([backup.example.com]:2222 ssh-ed25519 AAAA...)).
          - Host keys are always checked (C(StrictHostKeyChecking=yes), C(BatchMode=yes)); an
            unknown or changed key fails the run, nothing ever prompts. When unset, the user's
            C(~/.ssh/known_hosts) and the system's list are used.
        type: str
      connect_timeout:
        description:
          - Kind V(ssh) only. Seconds to wait for the server to answer a connection.
        type: int
        default: 10
  host:
    description:
      - Host name that sets are filed under in the store.
      - Defaults to the short host name of the machine the module runs on;
        roles pass C(inventory_hostname).
    type: str
"""
