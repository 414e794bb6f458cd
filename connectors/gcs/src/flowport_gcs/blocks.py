"""Prefect Blocks: GCP credentials and a GCS bucket; clients built lazily per process."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any, Literal, cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator, model_validator

from flowport.blocks import (
    BLOCK_CONFIG,
    LazyClients,
    docs_url,
    install_hint,
    logo_url,
    refuse_foreign,
    replaces,
)
from flowport.errors import AuthError, ConfigError
from flowport.retry import Retrier
from flowport.secrets import reveal

if TYPE_CHECKING:
    from flowport_gcs.store import GcsStore

GOOGLE_ENDPOINT = "https://storage.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/devstorage.full_control",)
#: Resumable chunks must be multiples of this (GCS protocol).
CHUNK_GRANULARITY = 256 * 1024


@replaces(
    "prefect_gcp.GcpCredentials",
    {
        "service_account_info": "service_account_info (the key JSON as one string)",
        "service_account_file": "service_account_file",
        "project": "project",
    },
)
class GcpCredentials(LazyClients, Block):
    """How to authenticate to Google Cloud: a service-account key (as a secret or a file),
    application default credentials (nothing set), or anonymous access to an emulator."""

    _block_type_slug = "flowport-gcp-credentials"
    _block_type_name = "Flowport GCP Credentials"
    _logo_url = logo_url("flowport_gcs")
    _documentation_url = docs_url("connectors/gcs/")
    _description = (
        "Google Cloud credentials (service-account key, application default credentials, or "
        f"anonymous for an emulator) for flowport's GCS tasks. {install_hint('flowport-gcs')}"
    )
    _code_example = """
    ```python
    from pathlib import Path

    from flowport_gcs import GcpCredentials

    key = Path("service-account.json").read_text()
    GcpCredentials(service_account_info=key, project="my-project").save("prod-gcp")

    credentials = GcpCredentials.load("prod-gcp")
    ```
    """

    model_config = BLOCK_CONFIG

    service_account_info: SecretStr | None = Field(
        default=None,
        title="Service-account key (JSON)",
        description="The service-account key JSON (kept secret). Also signs v4 URLs.",
    )
    service_account_file: str | None = Field(
        default=None,
        title="Service-account key file",
        description="Path to a service-account key JSON file.",
    )
    anonymous: bool = Field(
        default=False,
        title="Anonymous access",
        description="Send requests without credentials (emulators, public buckets). A "
        "service-account key given as well is then used only to sign URLs.",
    )
    endpoint: str | None = Field(
        default=None,
        title="API endpoint URL",
        description="API endpoint, e.g. http://127.0.0.1:4443 for fake-gcs-server "
        "(default: Google's).",
    )
    project: str | None = Field(
        default=None, title="Project ID", description="Project id (default: from the key)."
    )
    timeout: float = Field(
        default=120.0,
        gt=0,
        title="Timeout (s)",
        description="Seconds to wait for a connection or a response.",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> GcpCredentials:
        if self.service_account_info is not None and self.service_account_file:
            raise ValueError("give service_account_info or service_account_file, not both")
        return self

    @property
    def api_endpoint(self) -> str:
        """Base URL of the JSON / upload / download APIs."""
        return (self.endpoint or GOOGLE_ENDPOINT).rstrip("/")

    @property
    def is_custom_endpoint(self) -> bool:
        return self.api_endpoint != GOOGLE_ENDPOINT

    # -- credentials ---------------------------------------------------------------------

    def _service_account(self) -> Any | None:
        """Service-account credentials from the secret or the file, or None."""
        from google.oauth2 import service_account as _service_account

        service_account: Any = _service_account

        try:
            if self.service_account_info is not None:
                info = json.loads(reveal(self.service_account_info) or "")
                for part in ("private_key", "private_key_id"):  # masked if ever echoed alone
                    if isinstance(info, dict) and isinstance(info.get(part), str):
                        reveal(info[part])
                return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
            if self.service_account_file:
                return service_account.Credentials.from_service_account_file(
                    self.service_account_file, scopes=SCOPES
                )
        except (ValueError, KeyError, OSError) as exc:
            # The message of a JSON error may quote the key: name the field, not the content.
            source = "service_account_file" if self.service_account_file else "service_account_info"
            raise ConfigError(
                f"GCS credentials: {source} is not a usable service-account key "
                f"({type(exc).__name__})",
                system="GCS",
            ) from None
        return None

    def google_credentials(self) -> Any:
        """The google-auth credentials of this process (shared by every client)."""

        def make() -> Any:
            if self.anonymous:
                from google.auth import credentials

                return cast(Any, credentials).AnonymousCredentials()
            creds = self._service_account()
            if creds is not None:
                return creds
            import google.auth
            import google.auth.exceptions

            try:
                creds, _ = google.auth.default(scopes=SCOPES)
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise AuthError(
                    "GCS: no credentials given and no application default credentials found "
                    "(set service_account_info / service_account_file, run "
                    "'gcloud auth application-default login', or set anonymous=True for an "
                    "emulator)",
                    system="GCS",
                ) from exc
            return creds

        return self._client("credentials", make)

    def signing_credentials(self) -> Any | None:
        """Credentials that can sign v4 URLs: a service-account key, if one is configured."""
        return self._client("signing", self._service_account)

    def refresh(self) -> bool:
        """Refresh the credentials once (after a 401); False when they cannot be refreshed."""
        creds = self.google_credentials()
        if self.anonymous or not hasattr(creds, "refresh"):
            return False
        import google.auth.exceptions
        import google.auth.transport.requests

        try:
            creds.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.GoogleAuthError:
            return False
        return True

    def project_id(self) -> str | None:
        if self.project:
            return self.project
        creds = self.google_credentials()
        return getattr(creds, "project_id", None) or getattr(creds, "quota_project_id", None)

    # -- clients ---------------------------------------------------------------------------

    def session(self, pool_size: int = 16) -> Any:
        """An authorized ``requests`` session (one per process) for the data path."""

        creds = self.google_credentials()  # outside _client: its lock is not re-entrant

        def make() -> Any:
            import requests.adapters
            from google.auth.transport import requests as transport

            sess = cast(Any, transport).AuthorizedSession(creds)
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=4, pool_maxsize=max(pool_size, 4), max_retries=0
            )
            sess.mount("http://", adapter)
            sess.mount("https://", adapter)
            sess.headers["User-Agent"] = "flowport-gcs"
            return sess

        return self._client("session", make)

    def storage_client(self) -> Any:
        """A ``google.cloud.storage.Client`` sharing this process's credentials and session."""

        creds, session, project = self.google_credentials(), self.session(), self.project_id()

        def make() -> Any:
            from google.cloud import storage

            options: dict[str, Any] = {}
            if self.endpoint:
                options["client_options"] = {"api_endpoint": self.api_endpoint}
            client = storage.Client(
                project=project or "flowport", credentials=creds, _http=session, **options
            )
            # google-cloud-storage >= 3.x fetches bucket metadata in a background thread for
            # tracing attributes: an extra bucket-level GET per bucket, which needs
            # storage.buckets.get. Object permissions must be enough, so switch it off.
            if getattr(client, "_bucket_metadata_cache", None) is not None:
                client._bucket_metadata_cache = None
            return client

        return self._client("storage", make)


def _check_csek(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    try:
        raw = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("encryption_key must be a base64-encoded 32-byte AES-256 key")
    return value


@replaces(
    "prefect_gcp.GcsBucket",
    {
        "bucket": "bucket",
        "bucket_folder": "prefix",
        "gcp_credentials": "credentials (a flowport_gcs.GcpCredentials)",
    },
)
class GcsBucket(Block):
    """A GCS bucket (and optional key prefix) plus how to transfer to it.

    Only object-level requests are made (``client.bucket()``, never ``get_bucket()``), so
    object permissions on the bucket are enough.
    """

    _block_type_slug = "flowport-gcs-bucket"
    _block_type_name = "Flowport GCS Bucket"
    _logo_url = logo_url("flowport_gcs")
    _documentation_url = docs_url("connectors/gcs/")
    _description = (
        "A Google Cloud Storage bucket and key prefix for flowport's GCS tasks (resumable, "
        f"retried transfers). {install_hint('flowport-gcs')}"
    )
    _code_example = """
    ```python
    from prefect import flow

    from flowport_gcs import GcpCredentials, GcsBucket, download_file, upload_file

    GcsBucket(
        bucket="raw-events", prefix="landing", credentials=GcpCredentials.load("prod-gcp")
    ).save("raw-events")


    @flow
    def round_trip():
        bucket = GcsBucket.load("raw-events")
        upload_file(bucket, "events.parquet", "2026/11/events.parquet")
        download_file(bucket, "2026/11/events.parquet", "copy.parquet")
    ```
    """

    model_config = BLOCK_CONFIG

    bucket: str = Field(title="Bucket name", description="Bucket name.")
    prefix: str = Field(
        default="", title="Key prefix", description="Key prefix every key is relative to."
    )
    credentials: GcpCredentials = Field(
        default_factory=GcpCredentials, title="GCP credentials", description="How to authenticate."
    )
    chunk_size: int = Field(
        default=16 * 1024 * 1024,
        title="Upload chunk size (bytes)",
        ge=CHUNK_GRANULARITY,
        description="Bytes per resumable-upload chunk (a multiple of 256 KiB): the unit that "
        "is retried after a transient failure. Two chunks are in memory per upload.",
    )
    simple_upload_limit: int = Field(
        default=8 * 1024 * 1024,
        title="Single-request upload limit (bytes)",
        ge=0,
        description="Objects up to this size are written in one multipart request.",
    )
    concurrency: int = Field(
        default=8, ge=1, le=64, description="Parallel requests (composite parts, deletes)."
    )
    composite_threshold: int | None = Field(
        default=None,
        title="Composite upload threshold (bytes)",
        description="Files at least this big are uploaded as parallel parts joined with "
        "compose (None: never). Composite objects have a crc32c but no md5.",
    )
    kms_key_name: str | None = Field(
        default=None,
        title="Cloud KMS key name",
        description="Cloud KMS key (CMEK) for new objects.",
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        title="Customer-supplied encryption key",
        description="Customer-supplied AES-256 key (base64, kept secret) for reads and writes.",
    )
    storage_class: str | None = Field(
        default=None, description="Storage class of new objects (STANDARD, NEARLINE, ...)."
    )
    resume_check: Literal["auto", "status", "checksum"] = Field(
        default="auto",
        title="Resume check",
        description="How a failed chunk learns what the session kept. 'status' asks the "
        "session (the GCS protocol). 'checksum' is for fake-gcs-server, which finalises an "
        "upload on a status query: it reads the crc32c the emulator reports for the bytes "
        "received so far and compares it with the data sent. 'auto': 'checksum' for anonymous "
        "access to a custom endpoint, else 'status'.",
    )

    @field_validator("credentials", mode="before")
    @classmethod
    def _not_prefect_gcp(cls, value: Any) -> Any:
        refuse_foreign(
            value, where="GcsBucket(credentials=...)", expected="flowport_gcs.GcpCredentials"
        )
        return value

    @field_validator("encryption_key")
    @classmethod
    def _csek(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_csek(value)

    @field_validator("chunk_size")
    @classmethod
    def _granular(cls, value: int) -> int:
        if value % CHUNK_GRANULARITY:
            raise ValueError("chunk_size must be a multiple of 256 KiB (262144 bytes)")
        return value

    @property
    def resume_mode(self) -> str:
        """The effective ``resume_check`` ('status' or 'checksum')."""
        if self.resume_check != "auto":
            return self.resume_check
        emulator = self.credentials.anonymous and self.credentials.is_custom_endpoint
        return "checksum" if emulator else "status"

    def url(self, key: str = "") -> str:
        """``gs://bucket/prefix/key`` for messages and artifacts."""
        from flowport.keys import join_key

        path = join_key(self.prefix.strip("/"), key) if self.prefix else key
        return f"gs://{self.bucket}/{path}"

    def store(self, retrier: Retrier | None = None) -> GcsStore:
        """A :class:`~flowport_gcs.store.GcsStore` over this bucket, retrying with ``retrier``."""
        from flowport_gcs.store import GcsStore

        return GcsStore(self, retrier=retrier)
