"""Blocks: validation, secrets kept hidden, lazy clients, pickling."""

from __future__ import annotations

import base64
import json
import os
import pickle

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
