"""Prefect Block ``KafkaConnection``: brokers, security and client settings.

The producer and the admin client are built lazily, once per process, and dropped on pickling;
consumers are made per task call (see :meth:`KafkaConnection.new_consumer`).
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Any, Literal

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from flowport.blocks import BLOCK_CONFIG, LazyClients, docs_url, install_hint, logo_url
from flowport.errors import ConfigError
from flowport.secrets import reveal

ClientKind = Literal["producer", "consumer", "admin"]

KNOWN_SETTINGS: dict[ClientKind, frozenset[str]] = {
    "producer": frozenset(KafkaProducer.DEFAULT_CONFIG),
    "consumer": frozenset(KafkaConsumer.DEFAULT_CONFIG),
    "admin": frozenset(KafkaAdminClient.DEFAULT_CONFIG),
}
"""kafka-python's own config keys per client; ``extra_settings`` must use these."""

#: Settings the block has fields for, or flowport decides per call: not allowed in extras.
RESERVED_SETTINGS: dict[str, str] = {
    "bootstrap_servers": "the field bootstrap_servers",
    "security_protocol": "the field security_protocol",
    "sasl_mechanism": "the field sasl_mechanism",
    "sasl_plain_username": "the field sasl_username",
    "sasl_plain_password": "the field sasl_password",
    "ssl_cafile": "the field ssl_cafile",
    "ssl_certfile": "the field ssl_certfile",
    "ssl_keyfile": "the field ssl_keyfile",
    "ssl_password": "the field ssl_password",
    "client_id": "the field client_id",
    "group_id": "the group_id argument of the consume tasks",
    "enable_auto_commit": "the auto_commit argument of consume",
    "key_serializer": "the key_serializer argument of produce",
    "value_serializer": "the value_serializer argument of produce",
    "key_deserializer": "the key_deserializer argument of consume",
    "value_deserializer": "the value_deserializer argument of consume",
}

#: Flowport's producer defaults: idempotent, every in-sync replica acknowledges.
PRODUCER_DEFAULTS: dict[str, Any] = {"acks": "all", "enable_idempotence": True}


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Normalise ``linger.ms`` to ``linger_ms`` and refuse unknown or reserved keys."""
    known = frozenset().union(*KNOWN_SETTINGS.values())
    out: dict[str, Any] = {}
    for raw_key, value in settings.items():
        key = raw_key.replace(".", "_").replace("-", "_")
        if key in RESERVED_SETTINGS:
            raise ConfigError(
                f"Kafka setting '{raw_key}' cannot go in extra_settings: use "
                f"{RESERVED_SETTINGS[key]}",
                system="Kafka",
                target=raw_key,
            )
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown Kafka client setting '{raw_key}' in extra_settings (not a "
                f"kafka-python producer, consumer or admin setting){hint}",
                system="Kafka",
                target=raw_key,
            )
        out[key] = value
    return out


class KafkaConnection(LazyClients, Block):
    """Where the Kafka cluster is and how to authenticate; builds kafka-python clients."""

    _block_type_slug = "flowport-kafka-connection"
    _block_type_name = "Flowport Kafka Connection"
    _logo_url = logo_url("flowport_kafka")
    _documentation_url = docs_url("connectors/kafka/")
    _description = (
        "Apache Kafka brokers, security and client settings for flowport's Kafka tasks "
        f"(idempotent produce, consume with explicit commit). {install_hint('flowport-kafka')}"
    )
    _code_example = """
    ```python
    from prefect import flow

    from flowport_kafka import KafkaConnection, commit, consume, produce

    KafkaConnection(
        bootstrap_servers="k1:9092,k2:9092",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="etl",
        sasl_password="...",
    ).save("events-cluster")


    @flow
    def relay():
        kafka = KafkaConnection.load("events-cluster")
        produce(kafka, "events", [{"id": 1}], value_serializer="json")
        batch = consume(kafka, "events", group_id="loader", value_deserializer="json")
        commit(kafka, batch)
    ```
    """

    model_config = BLOCK_CONFIG

    bootstrap_servers: str = Field(
        title="Bootstrap servers",
        description="Comma-separated host:port list of brokers, e.g. 'k1:9092,k2:9092'.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients talk to brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(default=None, description="SASL mechanism (with SASL_* protocols).")
    )
    sasl_username: str | None = Field(
        default=None, title="SASL user name", description="SASL user name."
    )
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (kept secret)."
    )
    ssl_cafile: str | None = Field(
        default=None, title="SSL CA file", description="CA bundle (PEM) to verify brokers."
    )
    ssl_certfile: str | None = Field(
        default=None,
        title="SSL client certificate file",
        description="Client certificate (PEM) for mTLS.",
    )
    ssl_keyfile: str | None = Field(
        default=None, title="SSL client key file", description="Client private key (PEM) for mTLS."
    )
    ssl_password: SecretStr | None = Field(
        default=None, title="SSL key file password", description="Password of the key file."
    )
    client_id: str = Field(
        default="flowport",
        title="Client ID",
        description="Client id the brokers see in logs/quotas.",
    )
    request_timeout: float = Field(
        default=30.0, gt=0, title="Request timeout (s)", description="Per-request timeout (s)."
    )
    bootstrap_timeout: float = Field(
        default=30.0,
        gt=0,
        title="Bootstrap timeout (s)",
        description="How long a new client tries to reach a broker (s).",
    )
    extra_settings: dict[str, Any] = Field(
        default_factory=dict,
        title="Extra kafka-python settings",
        description="More kafka-python settings (linger_ms, compression_type, "
        "max_poll_interval_ms, ...); each goes to the clients that know it. Unknown keys "
        "are a ConfigError.",
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _join_servers(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        if isinstance(value, str) and not value.strip():
            raise ConfigError("Kafka bootstrap_servers is empty", system="Kafka")
        return value

    @field_validator("extra_settings")
    @classmethod
    def _check_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_settings(value)

    # -- client configuration -----------------------------------------------------------

    def client_config(self, kind: ClientKind, **overrides: Any) -> dict[str, Any]:
        """The kafka-python keyword arguments for one client kind (secrets revealed)."""
        cfg: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(self.request_timeout * 1000),
            "bootstrap_timeout_ms": int(self.bootstrap_timeout * 1000),
        }
        if self.sasl_mechanism:
            cfg["sasl_mechanism"] = self.sasl_mechanism
            cfg["sasl_plain_username"] = self.sasl_username
            cfg["sasl_plain_password"] = reveal(self.sasl_password)
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                cfg[name] = getattr(self, name)
        if self.ssl_password is not None:
            cfg["ssl_password"] = reveal(self.ssl_password)
        if kind == "producer":
            cfg.update(PRODUCER_DEFAULTS)
        known = KNOWN_SETTINGS[kind]
        cfg.update({k: v for k, v in self.extra_settings.items() if k in known})
        cfg.update(overrides)
        if kind == "consumer" and cfg["request_timeout_ms"] <= cfg.get("fetch_max_wait_ms", 500):
            cfg["request_timeout_ms"] = cfg.get("fetch_max_wait_ms", 500) + 1000
        return {k: v for k, v in cfg.items() if k in known}

    @property
    def brokers(self) -> str:
        """The bootstrap list, for messages."""
        return self.bootstrap_servers

    # -- clients ------------------------------------------------------------------------

    def producer(self) -> KafkaProducer:
        """This process's shared, thread-safe producer (idempotent, ``acks=all``)."""
        return self._client("producer", lambda: KafkaProducer(**self.client_config("producer")))

    def admin(self) -> KafkaAdminClient:
        """This process's admin client."""
        return self._client("admin", lambda: KafkaAdminClient(**self.client_config("admin")))

    def new_consumer(self, group_id: str | None, **overrides: Any) -> KafkaConsumer:
        """A fresh consumer (not cached): the caller owns it and closes it."""
        return KafkaConsumer(**self.client_config("consumer", group_id=group_id, **overrides))

    def replace(self, **changes: Any) -> KafkaConnection:
        """A new block with ``changes`` applied and no clients of its own yet.

        (``model_copy`` would share this block's client cache.)
        """
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**fields, **changes})

    def reset_client(self, name: str) -> None:
        """Close and forget one cached client (after a fatal producer error, say)."""
        with self._clients_lock:
            client = self._clients.pop(name, None)
        if client is not None:
            # closing a broken client may fail; it is forgotten either way
            with contextlib.suppress(Exception):
                client.close(timeout=5) if name == "producer" else client.close()

    def close(self) -> None:
        """Close this process's cached clients (they are rebuilt on next use)."""
        for name in ("producer", "admin"):
            self.reset_client(name)
