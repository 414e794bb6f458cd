"""The core ObjectStore contract, against the real S3 server."""

from __future__ import annotations

import pytest

from flowport.testing import ObjectStoreContract
from flowport_s3 import S3Bucket, S3Store


class TestS3Contract(ObjectStoreContract):
    # 25 keys over pages of 10: the listing test proves lazy pagination.
    listing_count = 25

    @pytest.fixture
    def store(self, bucket: S3Bucket) -> S3Store:
        return S3Store(bucket, page_size=10)


class TestS3ContractWithPrefix(ObjectStoreContract):
    """The same behaviour when every key lives under a block-level prefix."""

    @pytest.fixture
    def store(self, bucket: S3Bucket) -> S3Store:
        return S3Store(bucket.model_copy(update={"prefix": "nested/root"}), page_size=7)
