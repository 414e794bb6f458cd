"""Lineage of the Kafka tasks: topics as ``kafka://host:port[,host:port]/topic`` (brokers only,
never SASL credentials), with message counts and offsets as materialization metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowport.lineage import Lineage, kafka_uri, store_uri
from flowport.task import RetryingTask
from flowport_kafka.blocks import KafkaConnection


def topic_uris(connection: KafkaConnection, topics: str | Sequence[str]) -> list[str]:
    """The asset URI of each topic."""
    names = [topics] if isinstance(topics, str) else list(topics)
    return [kafka_uri(connection.brokers, name) for name in names]


def offsets(positions: Mapping[tuple[str, int], int]) -> dict[str, int]:
    """``{(topic, partition): offset}`` as JSON: ``{"topic/partition": offset}``."""
    return {f"{topic}/{partition}": offset for (topic, partition), offset in positions.items()}


def produce_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """produce: the topic; messages, bytes and the offset range written per partition."""
    metadata: dict[str, Any] = {}
    if result is not None:
        ranges: dict[str, list[int]] = {}
        for partition, offset in zip(result.partitions, result.offsets, strict=True):
            if offset >= 0:
                low, high = ranges.setdefault(f"{result.topic}/{partition}", [offset, offset])
                ranges[f"{result.topic}/{partition}"] = [min(low, offset), max(high, offset)]
        metadata = {"messages": len(result), "bytes": result.bytes, "offsets": ranges}
    return Lineage(
        writes=topic_uris(arguments["connection"], arguments["topic"]), metadata=metadata
    )


def consume_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """consume / consume_into: reads the topics (their sink reports its own writes)."""
    return Lineage(reads=topic_uris(arguments["connection"], arguments["topics"]))


def consume_to_store_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """consume_to_store: the topics into the store prefix; messages, bytes, files and the
    committed offsets (next offset to read, per partition)."""
    metadata: dict[str, Any] = {}
    if result is not None:
        metadata = {
            "messages": result.messages,
            "bytes": result.bytes,
            "files": len(result.files),
            "offsets": offsets(result.committed),
        }
    return Lineage(
        reads=topic_uris(arguments["connection"], arguments["topics"]),
        writes=[store_uri(arguments["store"], str(arguments.get("prefix") or "").strip("/"))],
        metadata=metadata,
    )


def source_uris(source: Any) -> list[str]:
    """A KafkaSource as transfer endpoint: each of its topics."""
    return topic_uris(source.connection, source.topics)
