"""Prefect Blocks: AWS credentials and an S3 bucket; clients built lazily, once per process.

botocore's own retries are switched to ``{"mode": "standard", "total_max_attempts": 1}``: one
HTTP attempt per call, so flowport's retry loop (per request, per part) is the only one and the
two layers never multiply (8 x 3 = 24 attempts on a dead endpoint). Note that botocore's
``max_attempts`` counts *retries* (``max_attempts: 1`` means two requests), hence
``total_max_attempts``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from flowport.blocks import LazyClients
from flowport.errors import ConfigError
from flowport.keys import validate_prefix
from flowport.secrets import reveal

MiB = 1024 * 1024
GiB = 1024 * MiB

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
#: Arguments a caller may not smuggle in through ``extra_put_args``: flowport sets them.
_RESERVED_PUT_ARGS = frozenset({"Bucket", "Key", "Body", "UploadId", "PartNumber", "IfNoneMatch"})

#: botocore retries off (one attempt in total); flowport's retry loop is the only one.
BOTOCORE_RETRIES = {"mode": "standard", "total_max_attempts": 1}


def validate_bucket_name(name: str) -> str:
    """Return ``name`` if it is a valid S3 bucket name, else raise ConfigError saying why."""
    problem = None
    if not isinstance(name, str) or not 3 <= len(name) <= 63:
        problem = "it must be 3 to 63 characters long"
    elif not _BUCKET.match(name):
        problem = (
            "use lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
        )
    elif ".." in name or ".-" in name or "-." in name:
        problem = "it contains '..', '.-' or '-.'"
    elif _IP.match(name):
        problem = "it looks like an IP address"
    if problem:
        raise ConfigError(
            f"S3 bucket name {name!r} is invalid: {problem}", system="S3", target=str(name)
        )
    return name


class AwsCredentials(LazyClients, Block):
    """How to reach AWS (or any S3-compatible store) and authenticate.

    Leave the keys empty to use the default chain (environment, profile, instance role).
    With ``role_arn`` the base credentials assume that role; the temporary credentials are
    refreshed by botocore before they expire, so long transfers never run into ExpiredToken.
    """

    _block_type_slug = "flowport-aws-credentials"
    _block_type_name = "Flowport AWS Credentials"
    _description = "AWS credentials, region, assumed role and endpoint for flowport connectors."

    aws_access_key_id: SecretStr | None = Field(default=None, description="Access key id.")
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key (kept secret)."
    )
    aws_session_token: SecretStr | None = Field(
        default=None, description="Session token of temporary credentials (kept secret)."
    )
    profile_name: str | None = Field(default=None, description="A profile of ~/.aws/config.")
    region_name: str | None = Field(default=None, description="AWS region, e.g. eu-west-1.")
    role_arn: str | None = Field(
        default=None, description="Role to assume; its credentials refresh before expiry."
    )
    role_session_name: str = Field(default="flowport", description="Session name for the role.")
    role_external_id: SecretStr | None = Field(
        default=None, description="External id the role's trust policy requires (kept secret)."
    )
    role_duration_seconds: int = Field(
        default=3600, ge=900, le=43200, description="Lifetime of each assumed-role credential."
    )
    endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint of an S3-compatible store (MinIO, Ceph, R2, versitygw, ...).",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="'path' for most S3-compatible stores; 'auto' for AWS."
    )
    verify_tls: bool = Field(default=True, description="Verify the endpoint's TLS certificate.")
    connect_timeout: float = Field(default=10.0, gt=0, description="Connect timeout (s).")
    read_timeout: float = Field(default=60.0, gt=0, description="Socket read timeout (s).")

    def fingerprint(self) -> str:
        """A digest of every setting (secrets included): clients are cached under it, so a
        ``model_copy(update=...)`` of a block, which shares the cache, never reuses a client
        built for other settings."""
        values = [
            (name, reveal(value) if isinstance(value, SecretStr) else value)
            for name, value in sorted(self.__dict__.items())
        ]
        return hashlib.sha256(repr(values).encode()).hexdigest()[:24]

    def _base_session(self) -> Any:
        import boto3

        return boto3.Session(
            aws_access_key_id=reveal(self.aws_access_key_id),
            aws_secret_access_key=reveal(self.aws_secret_access_key),
            aws_session_token=reveal(self.aws_session_token),
            profile_name=self.profile_name,
            region_name=self.region_name,
        )

    def _assume_role(self, base: Any) -> Any:
        import boto3
        import botocore.session
        from botocore.credentials import DeferredRefreshableCredentials

        sts = base.client("sts", config=self.config())
        args: dict[str, Any] = {
            "RoleArn": self.role_arn,
            "RoleSessionName": self.role_session_name,
            "DurationSeconds": self.role_duration_seconds,
        }
        if self.role_external_id is not None:
            args["ExternalId"] = reveal(self.role_external_id)

        def refresh() -> dict[str, str]:
            creds = sts.assume_role(**args)["Credentials"]
            reveal(creds["SecretAccessKey"])  # masked in anything flowport logs
            reveal(creds["SessionToken"])
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        core = botocore.session.Session()
        core._credentials = DeferredRefreshableCredentials(
            refresh_using=refresh, method="sts-assume-role"
        )
        region = self.region_name or base.region_name
        if region:
            core.set_config_variable("region", region)
        return boto3.Session(botocore_session=core)

    def session(self) -> Any:
        """The boto3 Session of this process (with the assumed role, if any)."""

        def make() -> Any:
            base = self._base_session()
            return self._assume_role(base) if self.role_arn else base

        return self._client(f"session:{self.fingerprint()}", make)

    def config(self, **overrides: Any) -> Any:
        """A botocore Config: flowport's retry choice, timeouts, addressing style, SigV4."""
        from botocore.config import Config

        options: dict[str, Any] = {
            "retries": dict(BOTOCORE_RETRIES),
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "signature_version": "s3v4",  # presigned URLs too; S3-compatible stores want v4
            "s3": {"addressing_style": self.addressing_style},
            "tcp_keepalive": True,
        }
        options.update(overrides)
        return Config(**options)

    def get_client(self, service: str = "s3", **config: Any) -> Any:
        """A new boto3 client (thread-safe to use; built under a lock since sessions are not)."""
        lock = self._client("lock", threading.Lock)
        with lock:
            return self.session().client(
                service,
                endpoint_url=self.endpoint_url if service == "s3" else None,
                region_name=self.region_name,
                verify=self.verify_tls,
                config=self.config(**config),
            )


class S3Bucket(LazyClients, Block):
    """An S3 bucket (and optional key prefix) plus how flowport writes to it."""

    _block_type_slug = "flowport-s3-bucket"
    _block_type_name = "Flowport S3 Bucket"
    _description = "An S3 bucket, key prefix, transfer settings and write options for flowport."

    bucket_name: str = Field(description="Name of the bucket.")
    credentials: AwsCredentials = Field(
        default_factory=AwsCredentials, description="Credentials, region and endpoint."
    )
    prefix: str = Field(default="", description="Key prefix every key is relative to.")
    part_size: int = Field(
        default=8 * MiB,
        ge=5 * MiB,
        le=5 * GiB,
        description="Multipart part size (bytes); objects up to one part are a single PUT.",
    )
    concurrency: int = Field(
        default=10, ge=1, le=64, description="Parts (or ranges) transferred in parallel."
    )
    stream_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "Parts in flight when uploading from a stream; each is held in memory, so a stream "
            "upload needs about (stream_concurrency + 2) x part_size."
        ),
    )
    checksum_algorithm: Literal["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"] | None = Field(
        default=None,
        description=(
            "Checksum S3 verifies on every upload and part (None: CRC32, like boto3's transfer "
            "manager, unless AWS_REQUEST_CHECKSUM_CALCULATION=when_required)."
        ),
    )
    server_side_encryption: Literal["AES256", "aws:kms", "aws:kms:dsse"] | None = Field(
        default=None, description="Server-side encryption of written objects."
    )
    ssekms_key_id: str | None = Field(default=None, description="KMS key for aws:kms encryption.")
    storage_class: str | None = Field(
        default=None, description="Storage class of written objects (STANDARD, STANDARD_IA, ...)."
    )
    extra_put_args: dict[str, Any] = Field(
        default_factory=dict,
        description="More PutObject / CreateMultipartUpload arguments (ContentType, Metadata).",
    )

    @field_validator("bucket_name")
    @classmethod
    def _valid_bucket(cls, value: str) -> str:
        try:
            return validate_bucket_name(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        try:
            return validate_prefix(value, system="S3").strip("/")
        except Exception as exc:
            raise ValueError(str(exc)) from None

    @field_validator("extra_put_args")
    @classmethod
    def _valid_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(_RESERVED_PUT_ARGS & set(value))
        if reserved:
            raise ValueError(f"extra_put_args may not set {reserved}: flowport sets them")
        return value

    @property
    def endpoint(self) -> str:
        """The endpoint for messages: the custom one, or AWS."""
        return self.credentials.endpoint_url or "AWS"

    def client(self) -> Any:
        """The S3 client of this process, created on first use (pool sized for concurrency)."""
        return self._client(
            f"s3:{self.credentials.fingerprint()}:{self.concurrency}",
            lambda: self.credentials.get_client(
                "s3", max_pool_connections=max(10, self.concurrency + 4)
            ),
        )

    def put_args(self) -> dict[str, Any]:
        """Arguments every PutObject / CreateMultipartUpload / copy of this bucket carries."""
        args: dict[str, Any] = dict(self.extra_put_args)
        if self.server_side_encryption:
            args["ServerSideEncryption"] = self.server_side_encryption
        if self.ssekms_key_id:
            args["SSEKMSKeyId"] = self.ssekms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args
