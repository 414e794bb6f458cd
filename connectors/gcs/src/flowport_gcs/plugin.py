"""The Connector object the ``flowport.connectors`` entry point names."""

from __future__ import annotations

from flowport.plugins import Connector
from flowport_gcs.blocks import GcpCredentials, GcsBucket
from flowport_gcs.tasks import TASKS, GcsTask


class _Check(GcsTask):
    def run(self, bucket: GcsBucket) -> str:
        store = self.store(bucket)
        store.page_size = 1
        listing = store.list()
        first = next(listing, None)
        where = bucket.credentials.api_endpoint
        seen = "it has objects" if first is not None else "it is empty"
        return f"GCS bucket {bucket.url()} answers a listing at {where} ({seen})"


_check = _Check(name="check")


def check(block: GcsBucket) -> str:
    """Side-effect-free connectivity check for ``flowport check gcs``: one listing page."""
    return str(_check.fn(block))


connector = Connector(
    name="gcs",
    distribution="flowport-gcs",
    summary="Google Cloud Storage: resumable, retried transfers; the same API as S3",
    tasks=TASKS,
    blocks=[GcpCredentials, GcsBucket],
    check=check,
    check_block=GcsBucket,
)
