# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""EBS snapshot sets: the engine of ``ebs_snapshot``, the restore engine of ``ebs_restore`` and the
releaser ``backup_retention`` uses to delete a set's snapshots.

A set holds no payload: its manifest lists one external reference
(``kind: ebs-snapshot``) per snapshot, in the volumes' region and, when a
copy was asked, in the DR region. Every snapshot carries the tags
``lifeboat:host``, ``lifeboat:source``, ``lifeboat:set-id`` and
``lifeboat:type`` (and the user's), and those tags are what restore and
retention check before touching a snapshot: a manifest is untrusted input,
and one that names a snapshot of another account, host, source or set is
refused.
"""

from __future__ import annotations

import time

from ansible_collections.lifeboat.backup.plugins.module_utils import _aws
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import escape

KIND = "ebs-snapshot"
GIB = 1024 ** 3
TAG_HOST = "lifeboat:host"
TAG_SOURCE = "lifeboat:source"
TAG_SET = "lifeboat:set-id"
TAG_TYPE = "lifeboat:type"
TAG_VOLUME = "lifeboat:volume-id"
TAG_DEVICE = "lifeboat:device"
TAG_COPY_OF = "lifeboat:copy-of"
OWN_TAGS = (TAG_HOST, TAG_SOURCE, TAG_SET, TAG_TYPE, TAG_VOLUME, TAG_DEVICE, TAG_COPY_OF)
MAX_PROGRESS_SAMPLES = 50
DEFAULT_WAIT_TIMEOUT = 1800
# The IAM action each EC2 call needs, for "access denied" messages.
IAM_ACTIONS = dict(
    DescribeVolumes="ec2:DescribeVolumes", DescribeInstances="ec2:DescribeInstances",
    DescribeSnapshots="ec2:DescribeSnapshots", CreateSnapshot="ec2:CreateSnapshot",
    CreateSnapshots="ec2:CreateSnapshots", CopySnapshot="ec2:CopySnapshot", DeleteSnapshot="ec2:DeleteSnapshot",
    CreateVolume="ec2:CreateVolume", AttachVolume="ec2:AttachVolume", DeleteVolume="ec2:DeleteVolume",
    DescribeImages="ec2:DescribeImages", CreateTags="ec2:CreateTags",
    DescribeAvailabilityZones="ec2:DescribeAvailabilityZones",
)
NOT_FOUND = {
    "InvalidVolume.NotFound": "volume", "InvalidInstanceID.NotFound": "instance",
    "InvalidInstanceID.Malformed": "instance", "InvalidVolumeID.Malformed": "volume",
    "InvalidSnapshot.NotFound": "snapshot", "InvalidSnapshotID.Malformed": "snapshot",
}


def connection_argument_spec():
    """The AWS connection options, top level (amazon.aws's names; doc fragment lifeboat.backup._aws)."""
    return dict((name, dict(spec)) for name, spec in _aws.CONNECTION_OPTIONS.items())


def tag_list(tags):
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_dict(items):
    return dict((t.get("Key"), t.get("Value")) for t in (items or []) if isinstance(t, dict))


def check_user_tags(tags):
    """User tags: strings, at most 40, none in the lifeboat: namespace (those are the collection's)."""
    tags = dict((str(k), str(v)) for k, v in (tags or {}).items())
    for key in tags:
        if key.lower().startswith("lifeboat:") or key.lower().startswith("aws:"):
            raise LifeboatError("Tag %s is reserved (lifeboat: and aws: keys are set by the collection or AWS); "
                                "choose another key." % escape(key, 60))
        if not 1 <= len(key) <= 127 or len(tags[key]) > 255:
            raise LifeboatError("Tag %s is too long (keys 1 to 127 characters, values up to 255)." % escape(key, 60))
    if len(tags) > 40:
        raise LifeboatError("At most 40 tags can be added (EC2 allows 50 per resource, the collection uses 7).")
    return tags


class Ec2(object):
    """EC2 clients per region, from one set of connection options; every error becomes one sentence."""

    def __init__(self, spec, environ=None, factory=None):
        self.connection = _aws.Connection(spec, environ)
        self.spec = spec
        self.environ = environ
        self._clients = {}
        self._factory = factory or _aws.client

    @property
    def region(self):
        if not self.connection.region:
            raise LifeboatError("No AWS region is set; set region (or AWS_REGION).")
        return self.connection.region

    def client(self, region=None):
        region = region or self.region
        if region not in self._clients:
            spec = dict(self.spec, region=region)
            self._clients[region] = self._factory(_aws.Connection(spec, self.environ), "ec2")
        return self._clients[region]

    def call(self, region, operation, what, **kwargs):
        """client(region).<operation>(**kwargs); a failure raises Ec2Error with one sentence naming ``what``."""
        region = region or self.region
        method = getattr(self.client(region), operation)
        try:
            return method(**kwargs)
        except _aws.BOTO_ERRORS as exc:
            raise Ec2Error(describe_error(exc, self.connection, what, region), exc)

    def account_id(self):
        """This account's id (STS GetCallerIdentity, which needs no permission), or None if it cannot be told.

        AWS filters ``OwnerIds=["self"]`` itself; the id is checked again on every snapshot
        described, so that an endpoint that ignores the filter cannot hand over another account's.
        """
        if not hasattr(self, "_account_id"):
            self._account_id = None
            try:
                sts = self._factory(_aws.Connection(dict(self.spec, region=self.region), self.environ), "sts")
                self._account_id = sts.get_caller_identity().get("Account")
            except _aws.BOTO_ERRORS:
                pass
        return self._account_id

    def pages(self, region, operation, key, what, **kwargs):
        region = region or self.region
        client = self.client(region)
        try:
            for page in client.get_paginator(operation).paginate(**kwargs):
                yield from page.get(key) or []
        except _aws.BOTO_ERRORS as exc:
            raise Ec2Error(describe_error(exc, self.connection, what, region), exc)


class Ec2Error(LifeboatError):
    def __init__(self, message, cause=None):
        super(Ec2Error, self).__init__(message)
        self.code = _aws.error_code(cause) if cause is not None else ""


def describe_error(exc, connection, what, region):
    """One sentence for an EC2 failure on ``what`` in ``region`` (never a secret, never a traceback)."""
    where = connection.endpoint_url and _aws.strip_userinfo(connection.endpoint_url) or "AWS"
    if not _aws.is_client_error(exc):
        return _aws.describe_error(exc, connection, what).replace("S3 endpoint", "EC2 endpoint")
    code = _aws.error_code(exc)
    operation = getattr(exc, "operation_name", None) or "request"
    message = escape(connection.redact(str((exc.response.get("Error") or {}).get("Message") or "")), 160)
    if code in NOT_FOUND:
        return ("%s does not exist in region %s (or is not visible to these credentials); check the id, or "
                "set region to the one it is in." % (escape(what, 120), region))
    if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "403"):
        return ("Access denied at %s (region %s) for %s on %s; grant these credentials %s."
                % (where, region, operation, escape(what, 120), IAM_ACTIONS.get(operation, "ec2:%s" % operation)))
    if code in ("AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "RequestExpired"):
        return _aws.describe_error(exc, connection, what)
    if code == "InvalidSnapshot.InUse":
        return "%s is in use (%s); it was left in place." % (escape(what, 120), message.rstrip(".") or "by an AMI")
    if code in ("SnapshotLimitExceeded", "SnapshotCreationPerVolumeRateExceeded", "RequestLimitExceeded"):
        return ("EC2 refused %s for %s in region %s for now (%s); try again later."
                % (operation, escape(what, 120), region, code))
    return "EC2 %s for %s in region %s failed: %s%s." % (
        operation, escape(what, 120), region, escape(code or "error", 60),
        (" (%s)" % message.rstrip(".")) if message else "")


# ------------------------------------------------------------------ choosing volumes

def _volume_entry(volume, devices=None):
    attachments = volume.get("Attachments") or []
    attached = attachments[0] if attachments else {}
    instance_id = attached.get("InstanceId")
    device = (devices or {}).get(volume["VolumeId"]) or attached.get("Device")
    return dict(volume_id=volume["VolumeId"], size_gib=int(volume.get("Size") or 0),
                availability_zone=volume.get("AvailabilityZone"), volume_type=volume.get("VolumeType"),
                encrypted=bool(volume.get("Encrypted")), kms_key_id=volume.get("KmsKeyId"),
                instance_id=instance_id, device=device, iops=volume.get("Iops"),
                throughput=volume.get("Throughput"),
                tags=dict((k, v) for k, v in tag_dict(volume.get("Tags")).items() if not k.startswith("aws:")))


def describe_instance(ec2, instance_id, region=None):
    region = region or ec2.region
    reservations = ec2.call(region, "describe_instances", "instance %s" % instance_id,
                            InstanceIds=[instance_id]).get("Reservations") or []
    for reservation in reservations:
        for instance in reservation.get("Instances") or []:
            if instance.get("InstanceId") == instance_id:
                return instance
    raise LifeboatError("instance %s does not exist in region %s; check the id, or set region to the one it is in."
                        % (escape(instance_id, 40), region))


def instance_volumes(instance):
    """{volume_id: device} of an instance's attached EBS volumes, and its root device name."""
    found = {}
    for mapping in instance.get("BlockDeviceMappings") or []:
        ebs = mapping.get("Ebs") or {}
        if ebs.get("VolumeId"):
            found[ebs["VolumeId"]] = mapping.get("DeviceName")
    return found, instance.get("RootDeviceName")


def select_volumes(ec2, volume_ids=None, instance_id=None, devices=None, tags=None):
    """The volumes to snapshot, as dicts (id, size, zone, device, instance...), in a stable order.

    Exactly one of ``volume_ids``, ``instance_id`` (all attached volumes, or
    those at ``devices``) and ``tags`` (volumes having every tag) chooses them.
    """
    region = ec2.region
    if instance_id:
        instance = describe_instance(ec2, instance_id)
        attached, dummy = instance_volumes(instance)
        by_device = dict((d, v) for v, d in attached.items())
        if devices:
            missing = [d for d in devices if d not in by_device]
            if missing:
                raise LifeboatError("Instance %s has no EBS volume at %s (it has %s)." % (
                    escape(instance_id, 40), ", ".join(escape(d, 40) for d in missing),
                    ", ".join(sorted(by_device)) or "none"))
            ids = [by_device[d] for d in devices]
        else:
            ids = sorted(attached)
        if not ids:
            raise LifeboatError("Instance %s has no EBS volume attached." % escape(instance_id, 40))
        volumes = ec2.call(None, "describe_volumes", "the volumes of instance %s" % instance_id,
                           VolumeIds=ids).get("Volumes") or []
        found = [_volume_entry(v, attached) for v in volumes]
    elif volume_ids:
        ids = list(dict.fromkeys(volume_ids))
        try:
            volumes = ec2.call(None, "describe_volumes", "volume %s" % ids[0], VolumeIds=ids).get("Volumes") or []
        except Ec2Error as exc:
            if exc.code not in NOT_FOUND or len(ids) == 1:
                raise
            volumes = []
            for volume_id in ids:  # one call per id, so that the unknown volume is named
                volumes += ec2.call(None, "describe_volumes", "volume %s" % volume_id,
                                    VolumeIds=[volume_id]).get("Volumes") or []
        found = [_volume_entry(v) for v in volumes]
    elif tags:
        filters = [{"Name": "tag:%s" % k, "Values": [str(v)]} for k, v in sorted(tags.items())]
        pages = ec2.pages(None, "describe_volumes", "Volumes", "the volumes tagged %s" % _show_tags(tags),
                          Filters=filters)
        found = [_volume_entry(v) for v in pages]
        if not found:
            raise LifeboatError("No volume in region %s has the tags %s." % (region, _show_tags(tags)))
    else:
        raise LifeboatError("Choose the volumes: volume_ids, instance_id or volume_tags.")
    order = dict((v, i) for i, v in enumerate(volume_ids or []))
    found.sort(key=lambda v: (order.get(v["volume_id"], 0), v["device"] or "", v["volume_id"]))
    if len(found) > _manifest.MAX_EXTERNAL // 2:
        raise LifeboatError("%d volumes were chosen; one set holds at most %d (with their copies)."
                            % (len(found), _manifest.MAX_EXTERNAL // 2))
    return found


def _show_tags(tags):
    return ", ".join("%s=%s" % (escape(k, 40), escape(str(v), 40)) for k, v in sorted(tags.items()))


def multi_volume_spec(ec2, volumes):
    """The CreateSnapshots instance specification covering exactly ``volumes``, or None.

    It applies when every volume is attached to one instance and they are all
    of its EBS volumes, or all but the boot volume.
    """
    instances = set(v["instance_id"] for v in volumes)
    if len(instances) != 1 or None in instances:
        return None
    instance_id = instances.pop()
    attached, root = instance_volumes(describe_instance(ec2, instance_id))
    chosen = set(v["volume_id"] for v in volumes)
    if chosen == set(attached):
        return {"InstanceId": instance_id, "ExcludeBootVolume": False}
    data = set(v for v, d in attached.items() if d != root)
    if root and chosen == data and len(data) < len(attached):
        return {"InstanceId": instance_id, "ExcludeBootVolume": True}
    return None


# ------------------------------------------------------------------ waiting

def wait_for(ec2, region, ids, what, timeout, sleep=time.sleep, clock=time.monotonic, interval=5.0, progress=None):
    """Poll the snapshots ``ids`` in ``region`` until all are completed; return their descriptions by id.

    A snapshot in state ``error`` fails at once; after ``timeout`` seconds the
    error names each snapshot's progress. ``progress`` (a list) receives
    samples ``{elapsed_s, region, snapshots: {id: "40%"}}``.
    """
    started = clock()
    ids = list(ids)
    while True:
        found = dict((s["SnapshotId"], s) for s in ec2.pages(
            region, "describe_snapshots", "Snapshots", what, SnapshotIds=ids))
        missing = [i for i in ids if i not in found]
        if missing:
            raise LifeboatError("Snapshot %s disappeared in region %s while %s was being taken."
                                % (", ".join(missing), region, what))
        failed = [s for s in found.values() if s.get("State") == "error"]
        if failed:
            raise LifeboatError("Snapshot %s of volume %s failed in region %s: %s." % (
                failed[0]["SnapshotId"], failed[0].get("VolumeId"), region,
                escape(failed[0].get("StateMessage") or "no reason given", 160).rstrip(".")))
        elapsed = clock() - started
        if progress is not None and len(progress) < MAX_PROGRESS_SAMPLES:
            progress.append(dict(elapsed_s=round(elapsed, 1), region=region,
                                 snapshots=dict((i, found[i].get("Progress") or "") for i in ids)))
        if all(found[i].get("State") == "completed" for i in ids):
            return found
        if elapsed >= timeout:
            pending = ", ".join("%s %s" % (i, found[i].get("Progress") or "0%") for i in ids
                                if found[i].get("State") != "completed")
            raise LifeboatError("%s did not complete within wait_timeout (%d s): still pending %s; raise "
                                "wait_timeout, the snapshots are deleted." % (what[0].upper() + what[1:], timeout, pending))
        sleep(min(interval, max(0.0, timeout - elapsed)) or interval)


# ------------------------------------------------------------------ the backup engine

class SnapshotEngine(object):
    """A BackupJob engine that snapshots EBS volumes: nothing is streamed, everything is an external reference.

    prepare: leftovers of killed runs are deleted, the pre hook runs, the
    snapshots are started together (CreateSnapshots when it covers the set),
    the post hook runs (always), the snapshots are waited for, then copied to
    ``copy_region`` and those waited for. record: one external reference per
    snapshot and copy. release: a set that was not recorded has its snapshots
    deleted, in both regions.
    """

    set_type = "full"

    def __init__(self, ec2, volumes=None, runner=None, pre_hook=None, post_hook=None, tags=None, copy_region=None,
                 copy_kms_key_id=None, wait_timeout=DEFAULT_WAIT_TIMEOUT, description=None, sleep=time.sleep,
                 clock=time.monotonic, interval=5.0, selection=None):
        self.ec2 = ec2
        self.volumes = volumes
        self.selection = dict(selection or {})
        self.runner = runner
        self.pre_hook = list(pre_hook or [])
        self.post_hook = list(post_hook or [])
        self.user_tags = check_user_tags(tags)
        self.region = ec2.region
        self.copy_region = copy_region
        if copy_region and copy_region == self.region:
            raise LifeboatError("copy_region %s is the region of the volumes; name another region." % copy_region)
        self.copy_kms_key_id = copy_kms_key_id
        self.wait_timeout = wait_timeout
        self.description = description
        self.sleep = sleep
        self.clock = clock
        self.interval = interval
        self.multi = None
        self.snapshots = []   # dicts: snapshot_id, volume
        self.copies = []      # dicts: snapshot_id, source_snapshot_id, volume
        self.removed = []
        self.progress = []
        self.hooks = []
        self.recorded = False
        self.left_behind = []

    # -- planning (no change)
    def plan(self):
        self.multi = multi_volume_spec(self.ec2, self.volumes)
        return self.multi

    def probe(self, decision=None):
        """Choose the volumes (``selection``: select_volumes' arguments) and how to snapshot them."""
        if self.volumes is None:
            self.volumes = select_volumes(self.ec2, **self.selection)
        self.plan()

    def describe(self, codec=None):
        if self.volumes is None:
            return []
        calls = []
        if self.pre_hook:
            calls.append(["pre_hook"] + self.pre_hook)
        if self.multi:
            calls.append(["ec2:CreateSnapshots", self.region, self.multi["InstanceId"]]
                         + (["exclude-boot-volume"] if self.multi["ExcludeBootVolume"] else []))
        else:
            calls += [["ec2:CreateSnapshot", self.region, v["volume_id"]] for v in self.volumes]
        if self.post_hook:
            calls.append(["post_hook"] + self.post_hook)
        if self.copy_region:
            calls += [["ec2:CopySnapshot", "%s->%s" % (self.region, self.copy_region), v["volume_id"]]
                      + (["kms"] if self.copy_kms_key_id else []) for v in self.volumes]
        return calls

    def tags(self, ctx, volume, copy_of=None):
        tags = dict(self.user_tags)
        tags.update({TAG_HOST: ctx.job.host, TAG_SOURCE: ctx.job.source, TAG_SET: ctx.set_id, TAG_TYPE: ctx.type,
                     TAG_VOLUME: volume["volume_id"]})
        if volume.get("device"):
            tags[TAG_DEVICE] = volume["device"]
        if copy_of:
            tags[TAG_COPY_OF] = copy_of
        return tags

    def check_result(self, decision=None):
        return dict(volumes=self.volumes, multi_volume=bool(self.multi), copy_region=self.copy_region,
                    snapshots=[], copies=[])

    # -- leftovers
    def leftovers(self, host, source, keep_set_ids):
        """Snapshots tagged for host/source whose set is not in ``keep_set_ids`` (a killed run's): (region, desc)."""
        found = []
        filters = [{"Name": "tag:%s" % TAG_HOST, "Values": [host]}, {"Name": "tag:%s" % TAG_SOURCE, "Values": [source]}]
        for region in [self.region] + ([self.copy_region] if self.copy_region else []):
            for snap in self.ec2.pages(region, "describe_snapshots", "Snapshots", "the snapshots of %s/%s" % (host, source),
                                       OwnerIds=["self"], Filters=filters):
                set_id = tag_dict(snap.get("Tags")).get(TAG_SET)
                if set_id in keep_set_ids:
                    continue
                account = self.ec2.account_id()  # asked only when there is a candidate
                if not account or snap.get("OwnerId") in (None, account):
                    found.append((region, snap))
        return found

    def cleanup(self, ctx):
        keep = set(m["set_id"] for m in ctx.job.existing()) | set([ctx.set_id])
        for region, snap in self.leftovers(ctx.job.host, ctx.job.source, keep):
            self._delete(region, snap["SnapshotId"])
            self.removed.append(dict(kind=KIND, id=snap["SnapshotId"], region=region,
                                     set_id=tag_dict(snap.get("Tags")).get(TAG_SET),
                                     reason="left by an interrupted run"))

    # -- the hooks of BackupJob
    def prepare(self, ctx):
        try:
            self.cleanup(ctx)
            self._take(ctx)
            what = "the snapshots of set %s" % ctx.set_id
            done = wait_for(self.ec2, self.region, [s["snapshot_id"] for s in self.snapshots], what,
                            self.wait_timeout, self.sleep, self.clock, self.interval, self.progress)
            for snap in self.snapshots:
                snap["start_time"] = str(done[snap["snapshot_id"]].get("StartTime") or "")
            if self.copy_region:
                self._copy(ctx)
                wait_for(self.ec2, self.copy_region, [c["snapshot_id"] for c in self.copies],
                         "the copies of set %s in %s" % (ctx.set_id, self.copy_region), self.wait_timeout,
                         self.sleep, self.clock, self.interval, self.progress)
        except LifeboatError as exc:
            self.release(ctx)
            if self.left_behind:
                raise LifeboatError("%s; snapshot %s could not be deleted (%s), delete it by hand." % (
                    str(exc).rstrip("."), ", ".join("%s in %s" % (i["id"], i["region"]) for i in self.left_behind),
                    self.left_behind[0]["error"].rstrip(".")))
            raise
        except BaseException:
            self.release(ctx)
            raise

    def _hook(self, name, argv):
        if self.runner is None:
            raise LifeboatError("%s needs a command runner." % name)
        rc, out, err = self.runner.run(argv)
        self.hooks.append(dict(hook=name, argv=argv, rc=rc))
        if rc != 0:
            last = ((err or out).strip().splitlines() or ["no output"])[-1]
            raise LifeboatError("%s %s exited with status %d: %s" % (name, escape(argv[0], 80), rc, escape(last, 200)))

    def _take(self, ctx):
        hook_error = None
        if self.pre_hook:
            try:
                self._hook("pre_hook", self.pre_hook)
            except LifeboatError as exc:
                hook_error = exc
        try:
            if hook_error is None:
                self._start(ctx)
        finally:
            if self.post_hook:
                try:
                    self._hook("post_hook", self.post_hook)
                except LifeboatError as exc:
                    hook_error = hook_error or exc
        if hook_error is not None:
            raise hook_error

    def _start(self, ctx):
        by_id = dict((v["volume_id"], v) for v in self.volumes)
        description = self.description or "lifeboat %s/%s %s" % (ctx.job.host, ctx.job.source, ctx.set_id)
        if self.multi:
            tags = self.tags(ctx, {"volume_id": "multi"})
            tags.pop(TAG_VOLUME)
            answer = self.ec2.call(None, "create_snapshots", "the volumes of instance %s" % self.multi["InstanceId"],
                                   InstanceSpecification=self.multi, Description=description[:255],
                                   TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}],
                                   CopyTagsFromSource="volume")
            made = answer.get("Snapshots") or []
            for item in made:
                self.snapshots.append(dict(snapshot_id=item["SnapshotId"], volume=by_id.get(item.get("VolumeId"))))
            stray = [s for s in self.snapshots if s["volume"] is None]
            got = set(s["volume"]["volume_id"] for s in self.snapshots if s["volume"])
            if stray or got != set(by_id):
                raise LifeboatError("CreateSnapshots on instance %s did not snapshot exactly the chosen volumes "
                                    "(its volumes changed meanwhile); run again." % self.multi["InstanceId"])
            for snap in self.snapshots:  # the per-volume tags CreateSnapshots cannot set
                volume = snap["volume"]
                extra = {TAG_VOLUME: volume["volume_id"]}
                if volume.get("device"):
                    extra[TAG_DEVICE] = volume["device"]
                self.ec2.call(None, "create_tags", "snapshot %s" % snap["snapshot_id"],
                              Resources=[snap["snapshot_id"]], Tags=tag_list(extra))
        else:
            for volume in self.volumes:
                answer = self.ec2.call(None, "create_snapshot", "volume %s" % volume["volume_id"],
                                       VolumeId=volume["volume_id"], Description=description[:255],
                                       TagSpecifications=[{"ResourceType": "snapshot",
                                                           "Tags": tag_list(self.tags(ctx, volume))}])
                self.snapshots.append(dict(snapshot_id=answer["SnapshotId"], volume=volume))

    def _copy(self, ctx):
        for snap in self.snapshots:
            kwargs = dict(SourceRegion=self.region, SourceSnapshotId=snap["snapshot_id"],
                          Description=("lifeboat copy of %s (%s)" % (snap["snapshot_id"], ctx.set_id))[:255],
                          TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(
                              self.tags(ctx, snap["volume"], copy_of=snap["snapshot_id"]))}])
            if self.copy_kms_key_id:
                kwargs.update(Encrypted=True, KmsKeyId=self.copy_kms_key_id)
            answer = self.ec2.call(self.copy_region, "copy_snapshot", "snapshot %s" % snap["snapshot_id"], **kwargs)
            self.copies.append(dict(snapshot_id=answer["SnapshotId"], source_snapshot_id=snap["snapshot_id"],
                                    volume=snap["volume"]))

    def produce(self, ctx):
        return []

    def record(self, ctx, manifest):
        for snap in self.snapshots:
            _manifest.add_external(manifest, KIND, snap["snapshot_id"], location=self.region,
                                   size=snap["volume"]["size_gib"] * GIB,
                                   attributes=self._attributes(snap["volume"], "primary"))
        for copy in self.copies:
            attributes = self._attributes(copy["volume"], "copy")
            attributes["copy_of"] = copy["source_snapshot_id"]
            if self.copy_kms_key_id:
                attributes["kms_key_id"] = self.copy_kms_key_id
            _manifest.add_external(manifest, KIND, copy["snapshot_id"], location=self.copy_region,
                                   size=copy["volume"]["size_gib"] * GIB, attributes=attributes)
        manifest["position"] = {"method": "create_snapshots" if self.multi else "create_snapshot"}
        self.recorded = True

    def _attributes(self, volume, role):
        attributes = dict(role=role, volume_id=volume["volume_id"], size_gib=str(volume["size_gib"]),
                          availability_zone=volume["availability_zone"] or "",
                          volume_type=volume["volume_type"] or "", encrypted="true" if volume["encrypted"] else "false")
        for key in ("device", "instance_id", "kms_key_id", "iops", "throughput"):
            if volume.get(key) not in (None, ""):
                attributes[key] = str(volume[key])
        return attributes

    def release(self, ctx):
        """Delete the snapshots of a set that was not recorded (a failed run); never raises."""
        if self.recorded:
            return
        for region, items in ((self.copy_region, self.copies), (self.region, self.snapshots)):
            for item in items:
                try:
                    self._delete(region, item["snapshot_id"])
                except LifeboatError as exc:
                    self.left_behind.append(dict(id=item["snapshot_id"], region=region, error=str(exc)))
        self.copies, self.snapshots = [], []

    def _delete(self, region, snapshot_id):
        try:
            self.ec2.call(region, "delete_snapshot", "snapshot %s" % snapshot_id, SnapshotId=snapshot_id)
        except Ec2Error as exc:
            if exc.code != "InvalidSnapshot.NotFound":
                raise

    def result(self, manifest=None, extras=None):
        if extras and extras.get("skipped"):
            return dict(snapshots=[], copies=[], removed_snapshots=[], progress=[], hooks=[], multi_volume=False,
                        volumes=[], copy_region=self.copy_region)
        snaps = [dict(snapshot_id=s["snapshot_id"], volume_id=s["volume"]["volume_id"], region=self.region,
                      device=s["volume"].get("device"), size_gib=s["volume"]["size_gib"]) for s in self.snapshots]
        copies = [dict(snapshot_id=c["snapshot_id"], source_snapshot_id=c["source_snapshot_id"],
                       volume_id=c["volume"]["volume_id"], region=self.copy_region) for c in self.copies]
        return dict(snapshots=snaps, copies=copies, removed_snapshots=self.removed, progress=self.progress,
                    hooks=self.hooks, multi_volume=bool(self.multi), volumes=self.volumes, copy_region=self.copy_region)


# ------------------------------------------------------------------ checking a manifest's references

def references(manifest, region=None):
    """The ebs-snapshot references of ``manifest``; with ``region``, only those in it."""
    return [r for r in manifest.get("external") or []
            if r.get("kind") == KIND and (region is None or r.get("location") == region)]


def owned_snapshots(ec2, region, ids, what):
    """{id: description} of those of ``ids`` in ``region`` that this account owns (missing ones are left out)."""
    found = {}
    for start in range(0, len(ids), 100):
        chunk = ids[start:start + 100]
        for snap in ec2.pages(region, "describe_snapshots", "Snapshots", what, OwnerIds=["self"],
                              Filters=[{"Name": "snapshot-id", "Values": chunk}]):
            found[snap["SnapshotId"]] = snap
    account = ec2.account_id()
    if account:
        found = dict((k, v) for k, v in found.items() if v.get("OwnerId") in (None, account))
    return found


def refusal(manifest, ref, snap):
    """Why the snapshot ``snap`` (a description, or None) must not be taken as ``ref`` of ``manifest``, or None."""
    name = "Snapshot %s in %s" % (escape(ref["id"], 40), escape(ref.get("location") or "?", 40))
    if snap is None:
        return "%s does not exist or is not owned by this account" % name
    tags = tag_dict(snap.get("Tags"))
    expected = {TAG_HOST: manifest["host"], TAG_SOURCE: manifest["source"], TAG_SET: manifest["set_id"]}
    wrong = [k for k, v in sorted(expected.items()) if tags.get(k) != v]
    if wrong:
        return ("%s is not a snapshot of set %s/%s/%s (its tags %s say otherwise)" % (
            name, manifest["host"], manifest["source"], manifest["set_id"],
            ", ".join("%s=%s" % (k, escape(tags.get(k) or "(none)", 40)) for k in wrong)))
    recorded_volume = (ref.get("attributes") or {}).get("volume_id")
    if recorded_volume and snap.get("VolumeId") and tags.get(TAG_COPY_OF) is None \
            and snap.get("VolumeId") != recorded_volume:
        return "%s was taken of volume %s, not of %s as the set records" % (
            name, escape(snap.get("VolumeId"), 40), escape(recorded_volume, 40))
    return None


# ------------------------------------------------------------------ restore

TAG_RESTORED_FROM = "lifeboat:restored-from"
TAG_SNAPSHOT = "lifeboat:snapshot-id"
TAG_RESTORE = "lifeboat:restore"
GONE_VOLUME_STATES = ("deleting", "deleted", "error")


class RestoreEngine(object):
    """A RestoreJob engine: volumes from a set's snapshots, optionally attached to an instance, tagged.

    Every volume carries the restore's name (``restore_name``, by default
    ``<set_id>@<zone>``) in the tag ``lifeboat:restore``; a rerun finds the
    volumes an earlier run of that restore created (same name, same set, same
    snapshot, in the zone), creates only the missing ones and attaches only
    those not attached yet, and reports ``changed`` false when there was
    nothing to do.
    """

    def __init__(self, ec2, availability_zone=None, instance_id=None, region=None, devices=None, tags=None,
                 volume_type=None, wait_timeout=DEFAULT_WAIT_TIMEOUT, sleep=time.sleep, clock=time.monotonic,
                 interval=2.0, restore_name=None):
        self.ec2 = ec2
        self.restore_name = restore_name
        self.changed = False
        self.region = region or ec2.region
        self.availability_zone = availability_zone
        self.instance_id = instance_id
        self.devices = dict(devices or {})
        self.user_tags = check_user_tags(tags)
        self.volume_type = volume_type
        self.wait_timeout = wait_timeout
        self.sleep = sleep
        self.clock = clock
        self.interval = interval
        self.refs = []
        self.plan = []
        self.volumes = []
        self.finished = False
        self.left_behind = []

    def preconditions(self, job):
        manifest = job.manifest
        self.refs = references(manifest, self.region)
        if not self.refs:
            regions = sorted(set(r.get("location") or "?" for r in references(manifest)))
            raise LifeboatError("Set %s has no EBS snapshot in region %s (it has some in %s); set region to one of "
                                "those." % (manifest["set_id"], self.region, ", ".join(regions) or "no region"))
        snaps = owned_snapshots(self.ec2, self.region, [r["id"] for r in self.refs],
                                "the snapshots of set %s" % manifest["set_id"])
        for ref in self.refs:
            why = refusal(manifest, ref, snaps.get(ref["id"]))
            if why:
                raise LifeboatError("%s; refusing to restore from set %s." % (why, manifest["set_id"]))
            if snaps[ref["id"]].get("State") != "completed":
                raise LifeboatError("Snapshot %s of set %s is %s, not completed; wait for it and run again."
                                    % (ref["id"], manifest["set_id"], escape(snaps[ref["id"]].get("State"), 20)))
        instance = None
        if self.instance_id:
            instance = describe_instance(self.ec2, self.instance_id, self.region)
            zone = (instance.get("Placement") or {}).get("AvailabilityZone")
            if self.availability_zone and zone and zone != self.availability_zone:
                raise LifeboatError("Instance %s is in %s, not in availability_zone %s; volumes attach only in the "
                                    "instance's zone." % (self.instance_id, zone, self.availability_zone))
            self.availability_zone = self.availability_zone or zone
        if not self.availability_zone:
            raise LifeboatError("Set availability_zone (or instance_id, whose zone is then used).")
        self._check_zone()
        if not self.restore_name:
            self.restore_name = "%s@%s" % (manifest["set_id"], self.availability_zone)
        if len(self.restore_name) > 200:
            raise LifeboatError("restore_name must be at most 200 characters (it is an EC2 tag value).")
        existing = self.restored_before(manifest)
        taken = set(instance_volumes(instance)[0].values()) if instance else set()
        self.plan = []
        for ref in self.refs:
            attributes = ref.get("attributes") or {}
            original = attributes.get("device")
            device = self.devices.get(attributes.get("volume_id")) or self.devices.get(original) or original
            found = existing.get(ref["id"])
            attached = self.attached_to(found)
            if found is not None and self.instance_id and attached not in (None, self.instance_id):
                raise LifeboatError("Volume %s, restored earlier from snapshot %s by restore %s, is attached to instance "
                                    "%s; detach it, or give another restore_name for new volumes." % (
                                        found["VolumeId"], ref["id"], self.restore_name, escape(attached, 40)))
            if found is not None and (attached == self.instance_id or not self.instance_id):
                if attached:
                    device = self.attachment(found).get("Device") or device
                self.plan.append(self.item(ref, attributes, device, found, attached))
                continue
            if self.instance_id:
                if not device:
                    raise LifeboatError("Volume %s of set %s has no recorded device; name one in devices."
                                        % (attributes.get("volume_id"), manifest["set_id"]))
                if device in taken:
                    raise LifeboatError("Instance %s already has a volume at %s; map volume %s to a free device "
                                        "in devices." % (self.instance_id, device, attributes.get("volume_id")))
                taken.add(device)
            self.plan.append(self.item(ref, attributes, device, found, None))
        self.changed = any(item["existing_volume_id"] is None or (self.instance_id and item["attached_to"] is None)
                           for item in self.plan)

    def item(self, ref, attributes, device, found, attached):
        return dict(snapshot_id=ref["id"], source_volume_id=attributes.get("volume_id"),
                    size_gib=(found or {}).get("Size") or int(attributes.get("size_gib") or 0) or None,
                    volume_type=self.volume_type or attributes.get("volume_type") or None,
                    device=device if self.instance_id else None,
                    availability_zone=self.availability_zone, region=self.region,
                    existing_volume_id=found["VolumeId"] if found else None, attached_to=attached)

    @staticmethod
    def attachment(volume):
        for attachment in (volume or {}).get("Attachments") or []:
            if attachment.get("State") in ("attaching", "attached"):
                return attachment
        return {}

    def attached_to(self, volume):
        return self.attachment(volume).get("InstanceId")

    def restored_before(self, manifest):
        """The volumes an earlier run of this restore created, by snapshot id (tags name the restore and the set)."""
        origin = "%s/%s/%s" % (manifest["host"], manifest["source"], manifest["set_id"])
        volumes = self.ec2.pages(self.region, "describe_volumes", "Volumes",
                                 "the volumes of restore %s" % self.restore_name,
                                 Filters=[{"Name": "tag:%s" % TAG_RESTORE, "Values": [self.restore_name]},
                                          {"Name": "tag:%s" % TAG_RESTORED_FROM, "Values": [origin]},
                                          {"Name": "availability-zone", "Values": [self.availability_zone]}])
        found = {}
        for volume in sorted(volumes, key=lambda v: v.get("VolumeId") or ""):
            tags = tag_dict(volume.get("Tags"))
            if volume.get("State") in GONE_VOLUME_STATES or tags.get(TAG_RESTORE) != self.restore_name \
                    or tags.get(TAG_RESTORED_FROM) != origin or volume.get("AvailabilityZone") != self.availability_zone:
                continue  # filters an endpoint ignored are checked again here
            found.setdefault(tags.get(TAG_SNAPSHOT), volume)
        return found

    def _check_zone(self):
        zones = self.ec2.call(self.region, "describe_availability_zones", "the availability zones of %s" % self.region)
        names = [z.get("ZoneName") for z in zones.get("AvailabilityZones") or []]
        if names and self.availability_zone not in names:
            raise LifeboatError("availability_zone %s is not a zone of region %s (%s)." % (
                escape(self.availability_zone, 40), self.region, ", ".join(sorted(names))))

    def check(self, job):
        pass

    def consume(self, job, member):
        manifest = job.manifest
        created = []
        for item in self.plan:
            tags = dict(self.user_tags)
            origin = "%s/%s/%s" % (manifest["host"], manifest["source"], manifest["set_id"])
            tags.update({TAG_RESTORED_FROM: origin, TAG_SNAPSHOT: item["snapshot_id"], TAG_RESTORE: self.restore_name})
            if item["source_volume_id"]:
                tags[TAG_VOLUME] = item["source_volume_id"]
            if item["existing_volume_id"]:
                self.volumes.append(dict(item, volume_id=item["existing_volume_id"], tags=tags, existing=True))
                continue
            kwargs = dict(SnapshotId=item["snapshot_id"], AvailabilityZone=item["availability_zone"],
                          TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list(tags)}])
            if item["volume_type"]:
                kwargs["VolumeType"] = item["volume_type"]
            answer = self.ec2.call(self.region, "create_volume", "a volume from snapshot %s" % item["snapshot_id"],
                                   **kwargs)
            self.volumes.append(dict(item, volume_id=answer["VolumeId"], size_gib=answer.get("Size") or item["size_gib"],
                                     tags=tags, attached_to=None, existing=False))
            created.append(answer["VolumeId"])
        if created:
            self._wait_volumes("available", created)

    def _wait_volumes(self, state, ids=None):
        ids = ids if ids is not None else [v["volume_id"] for v in self.volumes]
        started = self.clock()
        while True:
            found = dict((v["VolumeId"], v) for v in self.ec2.pages(
                self.region, "describe_volumes", "Volumes", "the restored volumes", VolumeIds=ids))
            bad = [i for i in ids if found.get(i, {}).get("State") == "error"]
            if bad:
                raise LifeboatError("Volume %s could not be created in %s (state error)." % (bad[0], self.availability_zone))
            if all(found.get(i, {}).get("State") == state for i in ids):
                return
            if self.clock() - started >= self.wait_timeout:
                raise LifeboatError("The restored volumes were not %s within wait_timeout (%d s); raise wait_timeout."
                                    % (state, self.wait_timeout))
            self.sleep(self.interval)

    def finalise(self, job):
        if self.instance_id:
            attached = []
            for volume in self.volumes:
                if volume["attached_to"] == self.instance_id:
                    continue
                self.ec2.call(self.region, "attach_volume", "volume %s" % volume["volume_id"],
                              VolumeId=volume["volume_id"], InstanceId=self.instance_id, Device=volume["device"])
                volume["attached_to"] = self.instance_id
                attached.append(volume["volume_id"])
            if attached:
                self._wait_volumes("in-use", attached)
        self.finished = True

    def release(self, job):
        """A failed restore deletes the volumes it created that are not attached; never raises."""
        if self.finished:
            return
        for volume in self.volumes:
            if volume.get("existing"):
                continue  # an earlier run's volume: not this run's to remove
            if volume["attached_to"]:
                self.left_behind.append(dict(volume_id=volume["volume_id"], reason="attached"))
                continue
            try:
                self.ec2.call(self.region, "delete_volume", "volume %s" % volume["volume_id"],
                              VolumeId=volume["volume_id"])
            except LifeboatError as exc:
                self.left_behind.append(dict(volume_id=volume["volume_id"], reason=str(exc)))


# ------------------------------------------------------------------ retention

class Releaser(object):
    """Deletes the EBS snapshots of a set that retention deletes, in every region the set names.

    ``check(manifest)`` returns the sentences that keep the set (a snapshot
    still pending, used by an AMI, or not the set's own); ``release(manifest)``
    deletes them and returns what was deleted. A snapshot already gone counts as
    released (a deletion cut short is finished by the next run).
    """

    kinds = (KIND,)

    def __init__(self, ec2):
        self.ec2 = ec2

    def _by_region(self, manifest):
        regions = {}
        for ref in references(manifest):
            regions.setdefault(ref.get("location") or self.ec2.region, []).append(ref)
        return regions

    def check(self, manifest):
        problems = []
        for region, refs in sorted(self._by_region(manifest).items()):
            ids = [r["id"] for r in refs]
            snaps = owned_snapshots(self.ec2, region, ids, "the snapshots of set %s" % manifest["set_id"])
            for ref in refs:
                snap = snaps.get(ref["id"])
                if snap is None:
                    continue  # gone (or never ours): nothing to delete
                why = refusal(manifest, ref, snap)
                if why:
                    problems.append(why + "; it is not deleted")
                elif snap.get("State") == "pending":
                    problems.append("Snapshot %s in %s is still pending (%s); it is deleted once completed"
                                    % (ref["id"], region, snap.get("Progress") or "0%"))
            if snaps:
                # the account's own AMIs, read whole: the block-device-mapping.snapshot-id filter is not
                # offered by every EC2-compatible endpoint
                images = self.ec2.pages(region, "describe_images", "Images", "the AMIs of set %s" % manifest["set_id"],
                                        Owners=["self"])
                for image in images:
                    used = [m.get("Ebs", {}).get("SnapshotId") for m in image.get("BlockDeviceMappings") or []]
                    for snap_id in sorted(set(u for u in used if u in snaps)):
                        problems.append("Snapshot %s in %s is used by AMI %s; deregister the AMI first"
                                        % (snap_id, region, escape(image.get("ImageId"), 40)))
        return problems

    def release(self, manifest):
        released, problems = [], []
        for region, refs in sorted(self._by_region(manifest).items()):
            snaps = owned_snapshots(self.ec2, region, [r["id"] for r in refs],
                                    "the snapshots of set %s" % manifest["set_id"])
            # copies first: a copy never outlives the snapshot it was copied from
            for ref in sorted(refs, key=lambda r: (r.get("attributes") or {}).get("role") != "copy"):
                snap = snaps.get(ref["id"])
                if snap is None:
                    continue
                if refusal(manifest, ref, snap):
                    continue
                try:
                    self.ec2.call(region, "delete_snapshot", "Snapshot %s in %s" % (ref["id"], region),
                                  SnapshotId=ref["id"])
                except Ec2Error as exc:
                    if exc.code == "InvalidSnapshot.NotFound":
                        continue
                    problems.append(str(exc).rstrip("."))
                    continue
                released.append(dict(kind=KIND, id=ref["id"], location=region))
        return released, problems
