"""flowport: the core of flowport's Prefect connectors.

It gives every connector the same ground: :class:`RetryingTask` (one retry loop on tenacity,
transient errors retried, permanent ones raised at once), the error hierarchy, plugin
discovery and hooks, the :class:`ObjectStore` protocol with :class:`LocalStore`, and progress
and artifact helpers. A flow that uses it::

    from prefect import flow
    from flowport import LocalStore

    @flow
    def pipeline():
        store = LocalStore("/tmp/flowport-demo")
        store.put_bytes(b"id,name\\n1,ada\\n", "raw/users.csv")
        return [o.key for o in store.list("raw/")]
"""

from flowport.errors import (
    AuthError,
    ConfigError,
    Conflict,
    DeliveryError,
    FlowportError,
    InvalidInput,
    NotFound,
    PermanentError,
    TransientError,
)
from flowport.parallel import bounded_map
from flowport.retry import NO_RETRY, Retrier, RetryPolicy
from flowport.store import BaseStore, DeleteResult, LocalStore, ObjectInfo, ObjectStore
from flowport.sync import SyncResult, sync_directory
from flowport.task import RetryingTask

__all__ = [
    "NO_RETRY",
    "AuthError",
    "BaseStore",
    "ConfigError",
    "Conflict",
    "DeleteResult",
    "DeliveryError",
    "FlowportError",
    "InvalidInput",
    "LocalStore",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "PermanentError",
    "Retrier",
    "RetryPolicy",
    "RetryingTask",
    "SyncResult",
    "TransientError",
    "bounded_map",
    "sync_directory",
]
