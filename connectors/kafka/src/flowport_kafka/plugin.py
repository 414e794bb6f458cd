"""The Connector object the ``flowport.connectors`` entry point names."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from flowport.errors import ConfigError
from flowport.plugins import Connector
from flowport_kafka import tasks
from flowport_kafka.blocks import KafkaConnection

#: Seconds ``flowport check kafka`` waits for a broker before it gives up.
CHECK_TIMEOUT = 10.0

#: Set it (DEBUG, INFO, WARNING, ...) to see kafka-python's own log lines during the check.
LOG_LEVEL_ENV = "FLOWPORT_KAFKA_LOG_LEVEL"

#: kafka-python's log level during the check when nobody configured the ``kafka`` logger: its
#: connection errors repeat what the check's own failure message already says.
CHECK_LOG_LEVEL = logging.CRITICAL


@contextlib.contextmanager
def kafka_log_level() -> Iterator[None]:
    """Quiet kafka-python's ``kafka`` logger for a while, unless configured.

    ``FLOWPORT_KAFKA_LOG_LEVEL`` wins; else a level the user set on the ``kafka`` logger is
    kept; else it is raised to :data:`CHECK_LOG_LEVEL`. The old level is restored after.
    """
    logger = logging.getLogger("kafka")
    wanted = os.environ.get(LOG_LEVEL_ENV, "").strip()
    if wanted:
        level = logging.getLevelName(wanted.upper())
        if not isinstance(level, int):
            raise ConfigError(
                f"{LOG_LEVEL_ENV}={wanted!r} is not a log level (DEBUG, INFO, WARNING, ERROR)",
                system="Kafka",
                target=LOG_LEVEL_ENV,
            )
    elif logger.level != logging.NOTSET:
        yield
        return
    else:
        level = CHECK_LOG_LEVEL
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def check(block: KafkaConnection) -> str:
    """Side-effect-free connectivity check: list the topics, with a short timeout.

    kafka-python's own log lines are quiet unless configured (see :func:`kafka_log_level`).
    """
    quick = block.replace(
        bootstrap_timeout=min(block.bootstrap_timeout, CHECK_TIMEOUT),
        request_timeout=min(block.request_timeout, CHECK_TIMEOUT),
    )
    with kafka_log_level():
        try:
            once = tasks.list_topics.retry_policy.replace(attempts=1)
            topics = tasks.list_topics.with_options(retry_policy=once).fn(quick)
        finally:
            quick.close()
    return f"Kafka at {block.bootstrap_servers}: {len(topics)} topic(s)"


connector = Connector(
    name="kafka",
    distribution="flowport-kafka",
    summary="Apache Kafka: confirmed produce, commit-after-success consume, admin, lag sensors",
    tasks={
        "produce": tasks.produce,
        "consume": tasks.consume,
        "commit": tasks.commit,
        "consume_into": tasks.consume_into,
        "await_message": tasks.await_message,
        "create_topics": tasks.create_topics,
        "delete_topics": tasks.delete_topics,
        "list_topics": tasks.list_topics,
        "describe_topics": tasks.describe_topics,
        "consumer_lag": tasks.consumer_lag,
        "wait_for_lag_below": tasks.wait_for_lag_below,
    },
    blocks=[KafkaConnection],
    check=check,
    check_block=KafkaConnection,
)
