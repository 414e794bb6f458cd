"""flowport-kafka: Prefect tasks for Apache Kafka that never lose a message silently.

Produce waits for every acknowledgement (idempotent producer, ``acks=all``) and raises a
``DeliveryError`` naming the messages that failed. Consume commits nothing: commit the batch
after your downstream steps succeeded, and a failed run reads the same messages again.

    from prefect import flow
    from flowport_kafka import KafkaConnection, commit, consume, create_topics, produce

    @flow
    def pipeline():
        kafka = KafkaConnection(bootstrap_servers="127.0.0.1:9092")
        create_topics(kafka, "events", partitions=3)
        produce(kafka, "events", [{"id": 1}, {"id": 2}], value_serializer="json")
        batch = consume(kafka, "events", group_id="loader", value_deserializer="json")
        write_somewhere(batch.values())      # your step; if it raises, nothing is committed
        commit(kafka, batch)                 # at-least-once

See the package README for every task and a worked at-least-once pipeline.
"""

from flowport_kafka.blocks import KafkaConnection
from flowport_kafka.errors import WaitTimeout
from flowport_kafka.queue import (
    Batch,
    ConsumeIntoResult,
    Delivery,
    Message,
    PartitionLag,
    ProduceResult,
    Record,
    TopicInfo,
)
from flowport_kafka.tasks import (
    AwaitMessage,
    Commit,
    Consume,
    ConsumeInto,
    ConsumerLag,
    CreateTopics,
    DeleteTopics,
    DescribeTopics,
    KafkaTask,
    ListTopics,
    Produce,
    WaitForLagBelow,
    await_message,
    commit,
    consume,
    consume_into,
    consumer_lag,
    create_topics,
    delete_topics,
    describe_topics,
    list_topics,
    produce,
    wait_for_lag_below,
)
from flowport_kafka.transfer import (
    ConsumeToStore,
    ConsumeToStoreResult,
    KafkaSource,
    consume_to_store,
)

__all__ = [
    "AwaitMessage",
    "Batch",
    "Commit",
    "Consume",
    "ConsumeInto",
    "ConsumeIntoResult",
    "ConsumeToStore",
    "ConsumeToStoreResult",
    "ConsumerLag",
    "CreateTopics",
    "DeleteTopics",
    "Delivery",
    "DescribeTopics",
    "KafkaConnection",
    "KafkaSource",
    "KafkaTask",
    "ListTopics",
    "Message",
    "PartitionLag",
    "Produce",
    "ProduceResult",
    "Record",
    "TopicInfo",
    "WaitForLagBelow",
    "WaitTimeout",
    "await_message",
    "commit",
    "consume",
    "consume_into",
    "consume_to_store",
    "consumer_lag",
    "create_topics",
    "delete_topics",
    "describe_topics",
    "list_topics",
    "produce",
    "wait_for_lag_below",
]
