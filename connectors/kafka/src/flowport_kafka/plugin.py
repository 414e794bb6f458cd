"""The Connector object the ``flowport.connectors`` entry point names."""

from __future__ import annotations

from flowport.plugins import Connector
from flowport_kafka import tasks
from flowport_kafka.blocks import KafkaConnection

#: Seconds ``flowport check kafka`` waits for a broker before it gives up.
CHECK_TIMEOUT = 10.0


def check(block: KafkaConnection) -> str:
    """Side-effect-free connectivity check: list the topics, with a short timeout."""
    quick = block.replace(
        bootstrap_timeout=min(block.bootstrap_timeout, CHECK_TIMEOUT),
        request_timeout=min(block.request_timeout, CHECK_TIMEOUT),
    )
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
