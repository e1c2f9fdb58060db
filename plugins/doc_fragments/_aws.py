# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # The AWS connection options of the EC2 modules (amazon.aws's names, aliases and environment variables).
    DOCUMENTATION = r"""
options:
  access_key:
    description:
      - AWS access key ID.
      - When unset, the environment variables E(AWS_ACCESS_KEY_ID) or E(AWS_ACCESS_KEY) are used,
        else boto3's own chain (profile, instance role...).
      - Mutually exclusive with O(profile).
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description:
      - AWS secret access key. When unset, E(AWS_SECRET_ACCESS_KEY) or E(AWS_SECRET_KEY) are used.
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description:
      - AWS STS session token, for temporary credentials. When unset, E(AWS_SESSION_TOKEN) is used.
    type: str
    aliases: [aws_session_token]
  profile:
    description:
      - A profile of the AWS configuration files. When unset and no keys are given, E(AWS_PROFILE) or
        E(AWS_DEFAULT_PROFILE) is used.
    type: str
    aliases: [aws_profile]
  region:
    description:
      - The region of the volumes. When unset, E(AWS_REGION) or E(AWS_DEFAULT_REGION) is used.
    type: str
    aliases: [aws_region]
  endpoint_url:
    description:
      - URL of an EC2-compatible endpoint to use instead of AWS's. When unset, E(AWS_URL) is used.
    type: str
    aliases: [aws_endpoint_url]
  aws_ca_bundle:
    description:
      - A CA bundle to verify the endpoint's TLS certificate with. When unset, E(AWS_CA_BUNDLE) is used.
    type: path
  validate_certs:
    description: Verify the endpoint's TLS certificate.
    type: bool
    default: true
  max_attempts:
    description: Attempts per request (botocore's standard retry mode), from 1 to 20.
    type: int
    default: 5
requirements:
  - boto3 and botocore on the host that talks to AWS
"""
