"""Blocks: validation, secrets kept hidden, lazy clients, pickling."""

from __future__ import annotations

import ast
import base64
import json
import os
import pickle
import xml.etree.ElementTree as ET

import cloudpickle
import pytest
from pydantic import SecretStr, ValidationError

from flowport.errors import ConfigError, InvalidInput
from flowport.secrets import redact
from flowport_gcs import GcpCredentials, GcsBucket
from tests.gcs.keys import throwaway_service_account


def test_block_slugs() -> None:
    assert GcpCredentials.get_block_type_slug() == "flowport-gcp-credentials"
    assert GcsBucket.get_block_type_slug() == "flowport-gcs-bucket"


def test_chunk_size_must_be_a_multiple_of_256k() -> None:
    with pytest.raises(ValidationError, match="256 KiB"):
        GcsBucket(bucket="b", chunk_size=300 * 1024)
    assert GcsBucket(bucket="b", chunk_size=512 * 1024).chunk_size == 512 * 1024


def test_customer_supplied_key_is_validated_and_hidden() -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    block = GcsBucket(bucket="b", encryption_key=SecretStr(key))
    assert key not in repr(block)
    assert key not in block.model_dump_json()
    with pytest.raises(ValidationError, match="32-byte"):
        GcsBucket(bucket="b", encryption_key=SecretStr("bm90LWEta2V5"))


def test_service_account_info_is_secret_and_loads() -> None:
    info = throwaway_service_account()
    creds = GcpCredentials(service_account_info=SecretStr(info))
    private_key = json.loads(info)["private_key"]
    assert private_key not in repr(creds)
    assert private_key not in creds.model_dump_json()
    google = creds.google_credentials()
    assert google.service_account_email.startswith("flowport-tests@")
    assert creds.project_id() == "flowport-test"
    # Once revealed, the key is masked in anything flowport logs or raises.
    assert private_key not in redact(f"oops {private_key}")


def test_bad_key_names_the_field_not_the_content() -> None:
    creds = GcpCredentials(service_account_info=SecretStr('{"type": "service_account", "x": 1}'))
    with pytest.raises(ConfigError, match="service_account_info") as err:
        creds.google_credentials()
    assert '"x"' not in str(err.value)


def test_only_one_key_source() -> None:
    with pytest.raises(ValidationError, match="not both"):
        GcpCredentials(service_account_info=SecretStr("{}"), service_account_file="/k.json")


def test_clients_are_lazy_and_dropped_on_pickling() -> None:
    block = GcsBucket(
        bucket="b", credentials=GcpCredentials(anonymous=True, endpoint="http://127.0.0.1:1")
    )
    client = block.credentials.storage_client()
    assert block.credentials.storage_client() is client  # cached per process
    assert block.credentials.session() is block.credentials.session()
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        copy = loads(dumps(block))
        assert copy.bucket == "b"
        assert copy.credentials._clients == {}
        assert copy.credentials.storage_client() is not client


def test_resume_check_defaults() -> None:
    emulator = GcpCredentials(anonymous=True, endpoint="http://127.0.0.1:4443")
    assert GcsBucket(bucket="b", credentials=emulator).resume_mode == "checksum"
    assert GcsBucket(bucket="b", credentials=GcpCredentials(anonymous=True)).resume_mode == "status"
    pinned = GcsBucket(bucket="b", credentials=emulator, resume_check="status")
    assert pinned.resume_mode == "status"


def test_unsafe_keys_refused_before_any_request() -> None:
    block = GcsBucket(
        bucket="b", credentials=GcpCredentials(anonymous=True, endpoint="http://127.0.0.1:1")
    )
    store = block.store()
    for key in ("../escape", "/etc/passwd", "a/../../b", "a\\b"):
        with pytest.raises(InvalidInput):
            store.put_bytes(b"x", key)
        with pytest.raises(InvalidInput):
            store.get_bytes(key)


def test_presign_without_key_is_a_config_error() -> None:
    block = GcsBucket(
        bucket="b", credentials=GcpCredentials(anonymous=True, endpoint="http://127.0.0.1:1")
    )
    with pytest.raises(ConfigError, match="service-account key"):
        block.store().presign("k")


def test_presign_signs_v4_offline() -> None:
    block = GcsBucket(
        bucket="b",
        credentials=GcpCredentials(service_account_info=SecretStr(throwaway_service_account())),
    )
    url = block.store().presign("dir/file name.txt", expires=600)
    assert url.startswith("https://storage.googleapis.com/b/dir/file%20name.txt?")
    assert "X-Goog-Algorithm=GOOG4-RSA-SHA256" in url
    assert "X-Goog-Expires=600" in url


# -- Prefect's block catalog ----------------------------------------------------------------


@pytest.mark.parametrize("block", [GcpCredentials, GcsBucket])
def test_catalog_entry_is_complete(block: type) -> None:
    from flowport.blocks import DOCS_URL, catalog_problems, code_example_source

    assert catalog_problems(block) == []
    assert str(block._logo_url) == f"{DOCS_URL}logos/flowport_gcs.svg"  # type: ignore[attr-defined]
    assert str(block._documentation_url) == f"{DOCS_URL}connectors/gcs/"  # type: ignore[attr-defined]
    assert "pip install flowport-gcs" in block.get_description()  # type: ignore[attr-defined]
    source = code_example_source(block)
    assert f"{block.__name__}(" in source
    ast.parse(source)


def test_logo_is_a_valid_svg_data_url() -> None:
    from flowport.blocks import logo_data_url

    url = logo_data_url("flowport_gcs")
    assert url.startswith("data:image/svg+xml;base64,")
    root = ET.fromstring(base64.b64decode(url.split(",", 1)[1]))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "GCS" in "".join(root.itertext())


def test_field_titles_are_human() -> None:
    creds = {name: f.title for name, f in GcpCredentials.model_fields.items()}
    assert creds["service_account_info"] == "Service-account key (JSON)"
    assert creds["project"] == "Project ID"
    assert creds["endpoint"] == "API endpoint URL"
    bucket = GcsBucket.model_json_schema()["properties"]
    assert bucket["kms_key_name"]["title"] == "Cloud KMS key name"
    assert bucket["chunk_size"]["title"] == "Upload chunk size (bytes)"


# -- prefect-gcp blocks are refused ---------------------------------------------------------


def _prefect_gcp(name: str, module: str) -> object:
    """A stand-in for a prefect-gcp block, told apart by its module (prefect-gcp itself pulls
    in another boto3 and the Google API client)."""
    return type(name, (), {"__module__": module, "service_account_info": {"private_key": "pk"}})()


def test_prefect_gcp_credentials_refused_by_gcs_bucket_with_the_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        GcsBucket(bucket="b", credentials=_prefect_gcp("GcpCredentials", "prefect_gcp.credentials"))
    message = str(caught.value)
    assert message.startswith(
        "GcsBucket(credentials=...) got a prefect-gcp block (prefect_gcp.GcpCredentials); "
        "flowport's blocks do not take prefect-gcp blocks. Use flowport_gcs.GcpCredentials"
    )
    assert "service_account_info -> service_account_info" in message
    assert "'pk'" not in message and "validation error" not in message


def test_prefect_gcp_bucket_refused_by_the_tasks() -> None:
    from flowport_gcs import exists

    bucket = _prefect_gcp("GcsBucket", "prefect_gcp.cloud_storage")
    with pytest.raises(ConfigError) as caught:
        exists.fn(bucket, "key")
    message = str(caught.value)
    assert "exists(bucket=...) got a prefect-gcp block (prefect_gcp.GcsBucket)" in message
    assert "gcp_credentials -> credentials" in message and "bucket_folder -> prefix" in message
