"""Blocks: secrets stay secret, names are validated, clients are lazy, roles refresh."""

from __future__ import annotations

import ast
import base64
import pickle
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import cloudpickle
import pytest
from botocore.stub import Stubber
from pydantic import SecretStr, ValidationError

from flowport.errors import ConfigError
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_s3.blocks import validate_bucket_name

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def creds(**kw: Any) -> AwsCredentials:
    return AwsCredentials(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SECRET,
        aws_session_token="tok-secret-123",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:9",
        addressing_style="path",
        **kw,
    )


def test_slugs() -> None:
    assert AwsCredentials.get_block_type_slug() == "flowport-aws-credentials"
    assert S3Bucket.get_block_type_slug() == "flowport-s3-bucket"


def test_secrets_never_in_repr_or_dump() -> None:
    bucket = S3Bucket(bucket_name="raw-events", credentials=creds())
    for text in (
        repr(bucket),
        str(bucket),
        repr(bucket.credentials),
        str(bucket.model_dump()),
        bucket.model_dump_json(),
    ):
        assert SECRET not in text
        assert "tok-secret-123" not in text
        assert "AKIDEXAMPLE" not in text


@pytest.mark.parametrize(
    "name", ["ab", "Upper", "under_score", "-lead", "trail-", "a..b", "192.168.1.1", "x" * 64]
)
def test_invalid_bucket_names_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="bucket name"):
        validate_bucket_name(name)
    with pytest.raises(ValidationError, match="bucket name"):
        S3Bucket(bucket_name=name)


def test_prefix_and_extra_args_validated() -> None:
    assert S3Bucket(bucket_name="ok-bucket", prefix="a/b/").prefix == "a/b"
    with pytest.raises(ValidationError, match="refused"):
        S3Bucket(bucket_name="ok-bucket", prefix="../up")
    with pytest.raises(ValidationError, match="Bucket"):
        S3Bucket(bucket_name="ok-bucket", extra_put_args={"Bucket": "other"})
    with pytest.raises(ValidationError):
        S3Bucket(bucket_name="ok-bucket", part_size=1024)  # below S3's 5 MiB minimum


def test_put_args() -> None:
    bucket = S3Bucket(
        bucket_name="ok-bucket",
        server_side_encryption="aws:kms",
        ssekms_key_id="kms-1",
        storage_class="STANDARD_IA",
        extra_put_args={"ContentType": "text/csv"},
    )
    assert bucket.put_args() == {
        "ContentType": "text/csv",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "kms-1",
        "StorageClass": "STANDARD_IA",
    }


def test_client_config_one_botocore_attempt_and_path_style() -> None:
    bucket = S3Bucket(bucket_name="ok-bucket", credentials=creds(), concurrency=20)
    client = bucket.client()
    cfg = client.meta.config
    assert cfg.retries["total_max_attempts"] == 1  # one request: flowport retries, not botocore
    assert cfg.retries["mode"] == "standard"
    assert cfg.s3["addressing_style"] == "path"
    assert cfg.max_pool_connections >= 20
    assert cfg.signature_version == "s3v4"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert bucket.client() is client  # built once per process


def test_blocks_pickle_without_clients() -> None:
    bucket = S3Bucket(bucket_name="ok-bucket", credentials=creds())
    bucket.client()
    for dumps in (pickle.dumps, cloudpickle.dumps):
        clone = pickle.loads(dumps(bucket))
        assert clone.bucket_name == "ok-bucket"
        assert clone._clients == {}
        assert clone.credentials.aws_secret_access_key.get_secret_value() == SECRET
        assert clone.client() is not bucket.client()


def test_used_store_pickles_without_its_client() -> None:
    """A store that has talked to S3 still goes to a Dask worker; the copy builds its own client."""
    store = S3Store(S3Bucket(bucket_name="ok-bucket", credentials=creds()), "raw")
    used = store.client
    for dumps in (pickle.dumps, cloudpickle.dumps):
        clone = pickle.loads(dumps(store))
        assert "_s3_client" not in clone.__dict__
        assert clone.prefix == "raw" and clone.client is not used
    assert store.client is used  # the original keeps its client


def test_assumed_role_credentials_refresh_before_expiry() -> None:
    """Credentials that expire within botocore's mandatory window are fetched again."""
    block = AwsCredentials(
        aws_access_key_id="AKIDBASE",
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        role_arn="arn:aws:iam::123456789012:role/loader",
        role_external_id="ext-secret-42",
    )
    sts = boto3.client(
        "sts", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    stub = Stubber(sts)
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)  # inside the 10 min window
    expected = {
        "RoleArn": "arn:aws:iam::123456789012:role/loader",
        "RoleSessionName": "flowport",
        "DurationSeconds": 3600,
        "ExternalId": "ext-secret-42",
    }
    for n in (1, 2):
        stub.add_response(
            "assume_role",
            {
                "Credentials": {
                    "AccessKeyId": f"ASIAEXAMPLEROLE0{n}",
                    "SecretAccessKey": f"role-secret-{n}",
                    "SessionToken": f"role-token-{n}",
                    "Expiration": soon,
                }
            },
            expected,
        )
    stub.activate()

    class Base:
        region_name = "us-east-1"

        def client(self, service: str, **_: Any) -> Any:
            assert service == "sts"
            return sts

    session = block._assume_role(Base())
    credentials = session.get_credentials()
    first = credentials.get_frozen_credentials()
    assert (first.access_key, first.token) == ("ASIAEXAMPLEROLE01", "role-token-1")
    second = credentials.get_frozen_credentials()  # near expiry: refreshed
    assert (second.access_key, second.token) == ("ASIAEXAMPLEROLE02", "role-token-2")
    stub.assert_no_pending_responses()
    assert session.region_name == "us-east-1"


def test_model_copy_with_other_settings_gets_its_own_client() -> None:
    bucket = S3Bucket(bucket_name="ok-bucket", credentials=creds())
    first = bucket.client()
    other = bucket.model_copy(
        update={
            "credentials": bucket.credentials.model_copy(
                update={"endpoint_url": "http://127.0.0.1:10"}
            )
        }
    )
    assert other.client() is not first
    assert other.client().meta.endpoint_url == "http://127.0.0.1:10"
    rotated = bucket.credentials.model_copy(update={"aws_secret_access_key": SecretStr("x" * 40)})
    assert rotated.fingerprint() != bucket.credentials.fingerprint()
    assert bucket.client() is first


# -- Prefect's block catalog ----------------------------------------------------------------


@pytest.mark.parametrize("block", [AwsCredentials, S3Bucket])
def test_catalog_entry_is_complete(block: type) -> None:
    from flowport.blocks import DOCS_URL, catalog_problems, code_example_source

    assert catalog_problems(block) == []
    assert str(block._logo_url) == f"{DOCS_URL}logos/flowport_s3.svg"  # type: ignore[attr-defined]
    assert str(block._documentation_url) == f"{DOCS_URL}connectors/s3/"  # type: ignore[attr-defined]
    assert "pip install flowport-s3" in block.get_description()  # type: ignore[attr-defined]
    source = code_example_source(block)
    assert f"{block.__name__}.load(" in source
    ast.parse(source)


def test_logo_is_a_valid_svg_data_url() -> None:
    from flowport.blocks import logo_data_url

    url = logo_data_url("flowport_s3")
    assert url.startswith("data:image/svg+xml;base64,")
    root = ET.fromstring(base64.b64decode(url.split(",", 1)[1]))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "S3" in "".join(root.itertext())


def test_field_titles_are_human() -> None:
    titles = {name: f.title for name, f in AwsCredentials.model_fields.items()}
    assert titles["aws_access_key_id"] == "AWS access key ID"
    assert titles["aws_secret_access_key"] == "AWS secret access key"
    assert titles["endpoint_url"] == "S3 endpoint URL"
    assert titles["verify_tls"] == "Verify TLS certificates"
    assert S3Bucket.model_fields["ssekms_key_id"].title == "SSE-KMS key ID"
    schema = S3Bucket.model_json_schema()
    assert schema["properties"]["prefix"]["title"] == "Key prefix"


# -- prefect-aws blocks are refused ---------------------------------------------------------


def _prefect_aws(name: str, module: str = "prefect_aws.credentials") -> Any:
    """A stand-in for a prefect-aws block (told apart by its module): prefect-aws itself would
    downgrade boto3 in the test environment."""
    return type(name, (), {"__module__": module, "aws_secret_access_key": SECRET})()


def test_prefect_aws_credentials_refused_by_s3_bucket_with_the_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        S3Bucket(bucket_name="raw-events", credentials=_prefect_aws("AwsCredentials"))
    message = str(caught.value)
    assert message.startswith(
        "S3Bucket(credentials=...) got a prefect-aws block (prefect_aws.AwsCredentials); "
        "flowport's blocks do not take prefect-aws blocks. Use flowport_s3.AwsCredentials"
    )
    for pair in (
        "aws_access_key_id -> aws_access_key_id",
        "assume_role_arn -> role_arn",
        "aws_client_parameters.endpoint_url -> endpoint_url",
        "aws_client_parameters.verify -> verify_tls",
    ):
        assert pair in message
    assert "migration/" in message
    assert SECRET not in message
    assert "validation error" not in message  # not a pydantic dump


def test_prefect_aws_minio_credentials_refused_too() -> None:
    with pytest.raises(ConfigError, match=r"prefect_aws\.MinIOCredentials.*minio_root_user"):
        S3Bucket(bucket_name="raw-events", credentials=_prefect_aws("MinIOCredentials"))


def test_prefect_aws_bucket_refused_by_the_tasks() -> None:
    from flowport_s3 import upload_bytes

    bucket = _prefect_aws("S3Bucket", module="prefect_aws.s3")
    with pytest.raises(ConfigError) as caught:
        upload_bytes.fn(bucket, b"data", "key")
    message = str(caught.value)
    assert "upload_bytes(bucket=...) got a prefect-aws block (prefect_aws.S3Bucket)" in message
    assert "flowport_s3.S3Bucket" in message and "bucket_folder -> prefix" in message
