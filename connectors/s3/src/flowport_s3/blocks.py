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

from flowport.blocks import (
    BLOCK_CONFIG,
    LazyClients,
    docs_url,
    install_hint,
    logo_url,
    refuse_foreign,
    replaces,
)
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


@replaces(
    "prefect_aws.AwsCredentials",
    {
        "aws_access_key_id": "aws_access_key_id",
        "aws_secret_access_key": "aws_secret_access_key",
        "aws_session_token": "aws_session_token",
        "profile_name": "profile_name",
        "region_name": "region_name",
        "assume_role_arn": "role_arn",
        "assume_role_kwargs.RoleSessionName": "role_session_name",
        "assume_role_kwargs.DurationSeconds": "role_duration_seconds",
        "assume_role_kwargs.ExternalId": "role_external_id",
        "aws_client_parameters.endpoint_url": "endpoint_url",
        "aws_client_parameters.verify": "verify_tls",
        "aws_client_parameters.config['s3']['addressing_style']": "addressing_style",
    },
)
@replaces(
    "prefect_aws.MinIOCredentials",
    {
        "minio_root_user": "aws_access_key_id",
        "minio_root_password": "aws_secret_access_key",
        "region_name": "region_name",
        "aws_client_parameters.endpoint_url": "endpoint_url (and addressing_style='path')",
    },
)
class AwsCredentials(LazyClients, Block):
    """How to reach AWS (or any S3-compatible store) and authenticate.

    Leave the keys empty to use the default chain (environment, profile, instance role).
    With ``role_arn`` the base credentials assume that role; the temporary credentials are
    refreshed by botocore before they expire, so long transfers never run into ExpiredToken.
    """

    _block_type_slug = "flowport-aws-credentials"
    _block_type_name = "Flowport AWS Credentials"
    _logo_url = logo_url("flowport_s3")
    _documentation_url = docs_url("connectors/s3/")
    _description = (
        "AWS credentials, region, assumed role and endpoint (AWS or any S3-compatible store) "
        f"for flowport's S3 tasks. {install_hint('flowport-s3')}"
    )
    _code_example = """
    ```python
    from flowport_s3 import AwsCredentials, S3Bucket

    # Keys left empty: the default chain (environment, profile, instance role).
    AwsCredentials(region_name="eu-west-1", role_arn="arn:aws:iam::123456789012:role/etl").save(
        "prod-aws"
    )

    bucket = S3Bucket(bucket_name="raw-events", credentials=AwsCredentials.load("prod-aws"))
    ```
    """

    model_config = BLOCK_CONFIG

    aws_access_key_id: SecretStr | None = Field(default=None, description="Access key id.")
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key (kept secret)."
    )
    aws_session_token: SecretStr | None = Field(
        default=None, description="Session token of temporary credentials (kept secret)."
    )
    profile_name: str | None = Field(default=None, description="A profile of ~/.aws/config.")
    region_name: str | None = Field(
        default=None, title="AWS region", description="AWS region, e.g. eu-west-1."
    )
    role_arn: str | None = Field(
        default=None,
        title="Role ARN to assume",
        description="Role to assume; its credentials refresh before expiry.",
    )
    role_session_name: str = Field(default="flowport", description="Session name for the role.")
    role_external_id: SecretStr | None = Field(
        default=None, description="External id the role's trust policy requires (kept secret)."
    )
    role_duration_seconds: int = Field(
        default=3600,
        title="Role credential lifetime (s)",
        ge=900,
        le=43200,
        description="Lifetime of each assumed-role credential.",
    )
    endpoint_url: str | None = Field(
        default=None,
        title="S3 endpoint URL",
        description="S3 endpoint of an S3-compatible store (MinIO, Ceph, R2, versitygw, ...).",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="'path' for most S3-compatible stores; 'auto' for AWS."
    )
    verify_tls: bool = Field(
        default=True,
        title="Verify TLS certificates",
        description="Verify the endpoint's TLS certificate.",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, title="Connect timeout (s)", description="Connect timeout (s)."
    )
    read_timeout: float = Field(
        default=60.0, gt=0, title="Read timeout (s)", description="Socket read timeout (s)."
    )

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


@replaces(
    "prefect_aws.S3Bucket",
    {
        "bucket_name": "bucket_name",
        "bucket_folder": "prefix",
        "credentials": "credentials (a flowport_s3.AwsCredentials)",
    },
)
class S3Bucket(LazyClients, Block):
    """An S3 bucket (and optional key prefix) plus how flowport writes to it."""

    _block_type_slug = "flowport-s3-bucket"
    _block_type_name = "Flowport S3 Bucket"
    _logo_url = logo_url("flowport_s3")
    _documentation_url = docs_url("connectors/s3/")
    _description = (
        "An S3 bucket, key prefix, transfer settings and write options for flowport's S3 "
        f"tasks (retried per request and per part). {install_hint('flowport-s3')}"
    )
    _code_example = """
    ```python
    from prefect import flow

    from flowport_s3 import AwsCredentials, S3Bucket, download_file, upload_file

    S3Bucket(
        bucket_name="raw-events",
        prefix="landing",
        credentials=AwsCredentials(region_name="eu-west-1"),
    ).save("raw-events")


    @flow
    def round_trip():
        bucket = S3Bucket.load("raw-events")
        upload_file(bucket, "events.parquet", "2026/11/events.parquet")
        download_file(bucket, "2026/11/events.parquet", "copy.parquet")
    ```
    """

    model_config = BLOCK_CONFIG

    bucket_name: str = Field(description="Name of the bucket.")
    credentials: AwsCredentials = Field(
        default_factory=AwsCredentials,
        title="AWS credentials",
        description="Credentials, region and endpoint.",
    )
    prefix: str = Field(
        default="", title="Key prefix", description="Key prefix every key is relative to."
    )
    part_size: int = Field(
        default=8 * MiB,
        title="Part size (bytes)",
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
        default=None,
        title="Server-side encryption",
        description="Server-side encryption of written objects.",
    )
    ssekms_key_id: str | None = Field(
        default=None, title="SSE-KMS key ID", description="KMS key for aws:kms encryption."
    )
    storage_class: str | None = Field(
        default=None, description="Storage class of written objects (STANDARD, STANDARD_IA, ...)."
    )
    extra_put_args: dict[str, Any] = Field(
        default_factory=dict,
        title="Extra PutObject arguments",
        description="More PutObject / CreateMultipartUpload arguments (ContentType, Metadata).",
    )

    @field_validator("credentials", mode="before")
    @classmethod
    def _not_prefect_aws(cls, value: Any) -> Any:
        refuse_foreign(
            value, where="S3Bucket(credentials=...)", expected="flowport_s3.AwsCredentials"
        )
        return value

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
