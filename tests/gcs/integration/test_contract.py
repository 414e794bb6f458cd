"""GcsStore passes the same ObjectStore contract as LocalStore and S3Store, on fake-gcs-server."""

from __future__ import annotations

import pytest

from flowport.testing import ObjectStoreContract
from flowport_gcs import GcsBucket, GcsStore


class TestGcsContract(ObjectStoreContract):
    #: A 12 MiB stream with 1 MiB chunks: thirteen resumable chunks.
    large_size = 12 * 1024 * 1024 + 7

    @pytest.fixture
    def store(self, gcs_block: GcsBucket) -> GcsStore:
        store = gcs_block.store()
        store.page_size = 10  # 25 keys in the listing test span three pages
        return store


class TestGcsContractWithPrefix(ObjectStoreContract):
    """The same behaviour when the block carries a key prefix."""

    large_size = 3 * 1024 * 1024 + 1

    @pytest.fixture
    def store(self, gcs_block: GcsBucket) -> GcsStore:
        return gcs_block.model_copy(update={"prefix": "tenant/a"}).store()
