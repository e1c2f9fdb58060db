# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""One boto3 client factory for everything in the collection that talks to AWS or an S3-compatible service.

The connection options carry amazon.aws's names, aliases and environment
variables, so ``module_defaults`` habits carry over:

============== ========================================== ===========================================
option         aliases                                    environment (used when the option is unset)
============== ========================================== ===========================================
access_key     aws_access_key_id, aws_access_key          AWS_ACCESS_KEY_ID, AWS_ACCESS_KEY
secret_key     aws_secret_access_key, aws_secret_key      AWS_SECRET_ACCESS_KEY, AWS_SECRET_KEY
session_token  aws_session_token                          AWS_SESSION_TOKEN
profile        aws_profile                                AWS_PROFILE, AWS_DEFAULT_PROFILE
region         aws_region                                 AWS_REGION, AWS_DEFAULT_REGION
endpoint_url   aws_endpoint_url                           AWS_URL
aws_ca_bundle                                             AWS_CA_BUNDLE
validate_certs
max_attempts
============== ========================================== ===========================================

The environment is read here, when a client is made, not through the
argument spec: an ``env_fallback`` would hand AWS settings to every store
option dictionary, whatever its kind.

boto3 and botocore are imported on first use, never when this module is
imported: every module imports the store kind registry, and importing boto3
costs about 0.3 s that a ``dir`` store never needs. ``HAS_BOTO3``,
``BOTO3_IMPORT_ERROR``, ``BOTO_ERRORS`` (for ``except`` clauses), ``boto3`` and
``botocore`` are module attributes made on first access; an ``except
_aws.BOTO_ERRORS`` clause evaluates its tuple only when an exception reaches
it, so a clause on a ``dir`` path imports nothing. ``client`` raises
``MissingLibraryError``, whose message is Ansible's ``missing_required_lib``
sentence, so a module reports it like any other failure. ``describe_error``
turns any botocore failure into one sentence that names the bucket or
endpoint and what to do, never a traceback and never a secret.
"""

from __future__ import annotations

import os
import re
import sys
import traceback

try:
    from ansible.module_utils.basic import missing_required_lib
except ImportError:  # the WAL archive command (_wal.py) runs outside Ansible, where ansible may be absent
    def missing_required_lib(library, reason=None, url=None):
        return "Failed to import the required Python library (%s) on %s's Python %s." % (
            library, os.uname()[1], sys.executable)

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import escape

# The names made by _load_boto3() on first use (module __getattr__, PEP 562).
_LAZY_NAMES = frozenset(["boto3", "botocore", "HAS_BOTO3", "BOTO3_IMPORT_ERROR", "BOTO_ERRORS"])


def _load_boto3():
    """Import boto3 and botocore once and set the lazy names; True when they are there."""
    names = globals()
    if "HAS_BOTO3" not in names:
        # pylint: disable=import-outside-toplevel
        try:
            import boto3
            import botocore
            import botocore.config
            import botocore.exceptions
        except ImportError:
            names.update(HAS_BOTO3=False, BOTO3_IMPORT_ERROR=traceback.format_exc(), BOTO_ERRORS=())
        else:
            # Every failure botocore raises for a request (ClientError is not a BotoCoreError).
            names.update(boto3=boto3, botocore=botocore, HAS_BOTO3=True, BOTO3_IMPORT_ERROR=None,
                         BOTO_ERRORS=(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError))
    return names["HAS_BOTO3"]


def __getattr__(name):
    if name in _LAZY_NAMES:
        _load_boto3()
        if name in globals():
            return globals()[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def _botocore_exceptions():
    """botocore.exceptions when botocore is already imported (by anyone), else None: an exception
    object cannot be a botocore one before botocore is imported, so this never imports it."""
    if "botocore.exceptions" not in sys.modules:
        return None
    return sys.modules["botocore.exceptions"]


DEFAULT_MAX_ATTEMPTS = 5

# Suboptions shared by every AWS-facing option group (the s3 store; EC2 snapshots later).
CONNECTION_OPTIONS = dict(
    access_key=dict(type="str", aliases=["aws_access_key_id", "aws_access_key"], no_log=True),
    secret_key=dict(type="str", aliases=["aws_secret_access_key", "aws_secret_key"], no_log=True),
    session_token=dict(type="str", aliases=["aws_session_token"], no_log=True),
    profile=dict(type="str", aliases=["aws_profile"], no_log=True),
    region=dict(type="str", aliases=["aws_region"]),
    endpoint_url=dict(type="str", aliases=["aws_endpoint_url"]),
    aws_ca_bundle=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    max_attempts=dict(type="int", default=DEFAULT_MAX_ATTEMPTS),
)

# The environment variables read for an unset option, in order of preference (amazon.aws's).
ENVIRONMENT = dict(
    access_key=("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"),
    secret_key=("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"),
    session_token=("AWS_SESSION_TOKEN",),
    profile=("AWS_PROFILE", "AWS_DEFAULT_PROFILE"),
    region=("AWS_REGION", "AWS_DEFAULT_REGION"),
    endpoint_url=("AWS_URL",),
    aws_ca_bundle=("AWS_CA_BUNDLE",),
)

SECRET_OPTIONS = ("access_key", "secret_key", "session_token", "profile")

# Error codes that mean "the endpoint does not implement this header or feature".
UNSUPPORTED_CODES = frozenset(["NotImplemented", "InvalidArgument", "InvalidRequest", "UnsupportedOperation",
                               "XNotImplemented", "Unsupported"])
PRECONDITION_CODES = frozenset(["PreconditionFailed", "412"])
NOT_FOUND_CODES = frozenset(["NoSuchKey", "404", "NotFound", "NoSuchUpload"])
# The IAM action an S3 operation needs, for "access denied" messages.
IAM_ACTIONS = dict(
    HeadBucket="s3:ListBucket", ListObjectsV2="s3:ListBucket", ListObjects="s3:ListBucket",
    ListMultipartUploads="s3:ListBucketMultipartUploads", HeadObject="s3:GetObject", GetObject="s3:GetObject",
    PutObject="s3:PutObject", CreateMultipartUpload="s3:PutObject", UploadPart="s3:PutObject",
    CompleteMultipartUpload="s3:PutObject", AbortMultipartUpload="s3:AbortMultipartUpload",
    DeleteObject="s3:DeleteObject", GetObjectLockConfiguration="s3:GetBucketObjectLockConfiguration",
)
CONNECTION_ERRORS = ("EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
                     "ReadTimeoutError", "ProxyConnectionError", "ConnectionError", "HTTPClientError")


_SESSIONS = {}


class MissingLibraryError(LifeboatError):
    """boto3/botocore is not installed on the host that talks to the store."""

    def __init__(self, library="boto3", import_error=None):
        self.library = library
        self.import_error = import_error
        super(MissingLibraryError, self).__init__(missing_required_lib(library))


def require_boto3():
    _load_boto3()
    if not globals()["HAS_BOTO3"]:
        raise MissingLibraryError("boto3", globals()["BOTO3_IMPORT_ERROR"])


def option(spec, name, environ=None):
    """The value of option ``name`` in ``spec`` (or one of its aliases), else its environment variable."""
    value = spec.get(name)
    if value in (None, ""):
        for alias in CONNECTION_OPTIONS.get(name, {}).get("aliases", ()):
            if spec.get(alias) not in (None, ""):
                value = spec[alias]
                break
    if value in (None, "") and environ is not None:
        for variable in ENVIRONMENT.get(name, ()):
            if environ.get(variable):
                return environ[variable]
    return None if value == "" else value


def strip_userinfo(url):
    """An endpoint URL for messages: no user:password@ part."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url or "")


class Connection(object):
    """Resolved connection settings: options first, then the environment, then boto3's own chain."""

    def __init__(self, spec, environ=None):
        environ = os.environ if environ is None else environ
        explicit_keys = any(option(spec, name) for name in ("access_key", "secret_key", "session_token"))
        explicit_profile = option(spec, "profile")
        if explicit_profile and explicit_keys:
            raise LifeboatError("profile and access_key/secret_key/session_token are mutually exclusive; "
                                "give one or the other.")
        if explicit_profile:
            self.access_key = self.secret_key = self.session_token = None
            self.profile = explicit_profile
        else:
            self.access_key = option(spec, "access_key", environ)
            self.secret_key = option(spec, "secret_key", environ)
            self.session_token = option(spec, "session_token", environ)
            # A profile from the environment only when no keys were given (as amazon.aws does).
            self.profile = None if (self.access_key or self.secret_key) else option(spec, "profile", environ)
        self.region = option(spec, "region", environ)
        self.endpoint_url = option(spec, "endpoint_url", environ)
        self.ca_bundle = option(spec, "aws_ca_bundle", environ)
        validate = spec.get("validate_certs")
        self.validate_certs = True if validate is None else bool(validate)
        attempts = spec.get("max_attempts")
        self.max_attempts = DEFAULT_MAX_ATTEMPTS if attempts is None else attempts
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= 20:
            raise LifeboatError("max_attempts must be a whole number from 1 to 20, not %r." % (escape(attempts, 20),))
        for name in ("access_key", "secret_key", "session_token", "profile", "region", "endpoint_url", "ca_bundle"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise LifeboatError("The AWS option %s must be a string." % name)

    @property
    def secrets(self):
        return [s for s in (self.access_key, self.secret_key, self.session_token, self.profile) if s]

    @property
    def endpoint(self):
        """The endpoint for messages (never with credentials in it)."""
        if self.endpoint_url:
            return strip_userinfo(self.endpoint_url)
        return "AWS (region %s)" % (self.region or "default")

    def redact(self, text):
        for secret in self.secrets:
            text = text.replace(secret, "********")
        return text


def client(connection, service="s3", **config):
    """A boto3 client for ``service`` with botocore's standard retry mode and ``max_attempts``.

    Raises MissingLibraryError without boto3 and LifeboatError (one sentence)
    when the settings are unusable (an unknown profile, say).
    """
    require_boto3()
    boto3, botocore = globals()["boto3"], globals()["botocore"]
    settings = dict(
        # total_max_attempts counts the first try too (botocore's max_attempts would count retries only).
        retries={"mode": "standard", "total_max_attempts": connection.max_attempts},
        user_agent_extra="lifeboat.backup",
        connect_timeout=10,
        read_timeout=120,
        tcp_keepalive=True,
    )
    if service == "s3" and connection.endpoint_url:
        # S3-compatible services commonly serve path-style URLs only.
        settings["s3"] = {"addressing_style": "path"}
    # The collection sends its own checksums (Content-MD5, SHA-256) where it wants
    # them; botocore's default CRC32 on every request breaks some S3-compatible services.
    settings.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    settings.update(config)
    try:
        cfg = botocore.config.Config(**settings)
    except TypeError:
        for name in ("request_checksum_calculation", "response_checksum_validation", "tcp_keepalive"):
            settings.pop(name, None)
        cfg = botocore.config.Config(**settings)
    verify = connection.validate_certs
    if verify and connection.ca_bundle:
        verify = connection.ca_bundle
    try:
        # One session per set of credentials in a process: a new session loads the service model again
        # (hundreds of milliseconds for EC2), and a module may need clients for several regions.
        # Only sessions of explicit keys are kept: a profile or boto3's own chain reads files and the
        # environment when the session is made, which may change between calls.
        key = (connection.access_key, connection.secret_key, connection.session_token)
        cacheable = bool(connection.access_key and connection.secret_key) and not connection.profile
        session = _SESSIONS.get(key) if cacheable else None
        if session is None:
            session = boto3.session.Session(
                aws_access_key_id=connection.access_key,
                aws_secret_access_key=connection.secret_key,
                aws_session_token=connection.session_token,
                profile_name=connection.profile,
            )
            if cacheable:
                _SESSIONS[key] = session
        return session.client(service, region_name=connection.region, endpoint_url=connection.endpoint_url,
                              verify=verify, config=cfg)
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:
        raise LifeboatError(describe_error(exc, connection, "the %s client" % service))


# ------------------------------------------------------------------ errors

def error_code(exc):
    """The S3/AWS error code of a ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    code = str((response.get("Error") or {}).get("Code") or "")
    if not code:
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = str(status or "")
    return code


def http_status(exc):
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    return (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")


def is_client_error(exc):
    errors = _botocore_exceptions()
    return errors is not None and isinstance(exc, errors.ClientError)


def is_not_found(exc):
    return is_client_error(exc) and (error_code(exc) in NOT_FOUND_CODES or http_status(exc) == 404)


def is_precondition_failed(exc):
    return is_client_error(exc) and (error_code(exc) in PRECONDITION_CODES or http_status(exc) == 412)


def is_unsupported(exc):
    """The endpoint (or an old botocore) does not know a header or parameter we sent."""
    errors = _botocore_exceptions()
    if errors is not None and isinstance(exc, errors.ParamValidationError):
        return True
    return is_client_error(exc) and (error_code(exc) in UNSUPPORTED_CODES or http_status(exc) == 501)


def _region_hint(exc):
    response = getattr(exc, "response", None) or {}
    region = (response.get("Error") or {}).get("Region")
    if not region:
        headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        region = headers.get("x-amz-bucket-region")
    return escape(region, 40) if region else None


def describe_error(exc, connection, what, bucket=None):
    """One sentence for a botocore failure while doing something to ``what`` (a bucket, a key URL...).

    It names ``what`` and the endpoint and says what to do; it never holds a
    secret (credentials are redacted from anything the service sent back).
    """
    where = connection.endpoint
    attempts = connection.max_attempts
    name = type(exc).__name__
    if is_client_error(exc):
        code = error_code(exc)
        status = http_status(exc)
        operation = getattr(exc, "operation_name", None) or "request"
        message = (getattr(exc, "response", None) or {}).get("Error", {}).get("Message") or ""
        message = escape(connection.redact(str(message)), 160)
        if code == "NoSuchBucket":
            return ("The bucket %s does not exist at %s; create it, or correct bucket, region or endpoint_url."
                    % (escape(bucket or what), where))
        if code in ("InvalidAccessKeyId", "InvalidClientTokenId", "AuthFailure", "UnrecognizedClientException"):
            return ("%s does not know the access key used for %s; check access_key (or AWS_ACCESS_KEY_ID, "
                    "or the profile) on the host that talks to the store." % (where, escape(what)))
        if code == "SignatureDoesNotMatch":
            return ("%s rejected the request signature for %s: the secret key does not belong to the access "
                    "key; check secret_key (or AWS_SECRET_ACCESS_KEY, or the profile)." % (where, escape(what)))
        if code in ("ExpiredToken", "ExpiredTokenException", "InvalidToken", "TokenRefreshRequired",
                    "RequestExpired"):
            return ("%s refused the credentials for %s: the session token is expired or invalid; "
                    "renew session_token (or the profile's credentials)." % (where, escape(what)))
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                    "301") or status == 301:
            region = _region_hint(exc)
            return ("The bucket %s is in another region%s than the one in use (%s); set region%s."
                    % (escape(bucket or what), " (%s)" % region if region else "", connection.region or "default",
                       " to %s" % region if region else " to the bucket's region"))
        if code == "InvalidObjectState":
            return ("%s is in an archive storage class and cannot be read until it is restored; restore it "
                    "first (S3 RestoreObject) or keep sets in a readable storage class." % escape(what))
        if code.startswith("KMS") or "KMS" in code:
            return ("SSE-KMS failed for %s at %s (%s); check kms_key_id and that these credentials may use "
                    "that key." % (escape(what), where, escape(code, 60)))
        if code == "InvalidStorageClass":
            return "%s does not offer the storage class asked for %s; choose another storage_class." % (where, escape(what))
        if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
            action = IAM_ACTIONS.get(operation, "s3:%s" % operation)
            return ("Access denied at %s for %s on %s; grant these credentials %s there (with tags also "
                    "s3:PutObjectTagging, with SSE-KMS also kms:GenerateDataKey and kms:Decrypt)."
                    % (where, operation, escape(what), action))
        if code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"):
            return ("%s kept failing (%s) for %s after %d attempts; try again later or raise max_attempts."
                    % (where, escape(code, 60), escape(what), attempts))
        if code in ("EntityTooLarge", "EntityTooSmall", "InvalidPart", "InvalidPartOrder"):
            return "%s refused the upload of %s (%s: %s)." % (where, escape(what), escape(code, 60), message.rstrip("."))
        if "object lock" in message.lower():
            return ("%s refused %s for Object Lock (%s); object_lock_mode needs a bucket created with Object Lock "
                    "enabled." % (where, escape(what), message.rstrip(".")))
        if code == "InvalidBucketName":
            return "%s is not a valid bucket name for %s; correct bucket." % (escape(bucket or what), where)
        return "S3 %s for %s at %s failed: %s%s." % (
            operation, escape(what), where, escape(code or "error", 60), (" (%s)" % message.rstrip(".")) if message else "")
    errors = _botocore_exceptions()
    if errors is None:
        return "%s for %s at %s: %s." % (name, escape(what), where, escape(connection.redact(str(exc)), 160))
    if isinstance(exc, errors.NoCredentialsError):
        return ("No AWS credentials were found for %s: set access_key and secret_key (or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY), or a profile, on the host that talks to the store." % escape(what))
    if isinstance(exc, errors.PartialCredentialsError):
        return ("Only part of the AWS credentials for %s were given; set both access_key and secret_key "
                "(or both environment variables)." % escape(what))
    if isinstance(exc, errors.ProfileNotFound):
        return ("The AWS profile given for %s (profile or AWS_PROFILE) does not exist on this host; add it to "
                "~/.aws/config or ~/.aws/credentials, or use access_key and secret_key." % escape(what))
    if isinstance(exc, errors.NoRegionError):
        return "No AWS region is set for %s; set region (or AWS_REGION)." % escape(what)
    if isinstance(exc, errors.SSLError):
        return ("TLS verification failed for %s (%s); set aws_ca_bundle to the CA that signed its certificate."
                % (where, escape(what)))
    if isinstance(exc, (errors.InvalidEndpointConfigurationError, errors.InvalidRegionError)) or (
            isinstance(exc, ValueError) and "endpoint" in str(exc).lower()):
        return "The endpoint_url or region for %s is not usable (%s)." % (
            escape(what), escape(connection.redact(str(exc)), 160))
    if name in CONNECTION_ERRORS or isinstance(exc, (errors.EndpointConnectionError, errors.ConnectionError)):
        return ("Cannot reach the S3 endpoint %s for %s after %d attempts; check endpoint_url (or region), "
                "the network and that the service is running." % (where, escape(what), attempts))
    if isinstance(exc, errors.ParamValidationError):
        return "An S3 request for %s was refused before sending: %s" % (
            escape(what), escape(connection.redact(str(exc)).replace("\n", " "), 200))
    if isinstance(exc, (errors.IncompleteReadError, getattr(errors, "ResponseStreamingError", errors.IncompleteReadError))):
        return "Reading %s from %s was cut off after %d attempts; try again." % (escape(what), where, attempts)
    return "%s for %s at %s: %s." % (name, escape(what), where, escape(connection.redact(str(exc)), 160).rstrip("."))
