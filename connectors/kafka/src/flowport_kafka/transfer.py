"""Kafka as a :class:`flowport.transfer.Source`: consumed batches as Arrow record batches.

    from flowport.transfer import StoreSink, transfer
    from flowport_kafka import KafkaSource

    transfer(KafkaSource(kafka, "orders", "lake-loader"), StoreSink(store, "raw/orders"),
             name="orders")

Each :meth:`KafkaSource.extract` reads one deterministic batch from the group's committed
offsets and names it after its offset ranges (``orders-p0-100-199_p1-0-49``); the offsets are
committed by :func:`flowport.transfer.transfer` only after the sink stored the batch. The
ranges are pinned in the group's offset metadata before reading, so a rerun after a crash
anywhere reads exactly the same ranges (whatever arrived meanwhile), gets the same label and
overwrites the same objects: an exactly-once effect in the sink.

Needs pyarrow: ``pip install 'flowport-kafka[arrow]'``.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kafka import TopicPartition

from flowport.artifacts import summarise
from flowport.errors import InvalidInput
from flowport.formats import _pyarrow
from flowport.lineage import endpoint_uris
from flowport.progress import run_logger
from flowport.store import ObjectStore
from flowport.transfer import Extract, StoreSink, TransferResult, transfer
from flowport_kafka import errors, queue
from flowport_kafka import lineage as kafka_lineage
from flowport_kafka.blocks import KafkaConnection
from flowport_kafka.queue import Reader
from flowport_kafka.tasks import KafkaTask, _check_member, _topics, consume

if TYPE_CHECKING:
    import pyarrow as pa

#: Columns every batch has (``value`` is replaced by the value's fields with ``"json"``).
META_COLUMNS = ("topic", "partition", "offset", "timestamp", "key", "headers")
#: Longer labels are shortened to topic, partition count and a digest of the full label.
MAX_LABEL = 180
#: Rows per Arrow record batch handed to the sink.
BATCH_ROWS = 64 * 1024


def label_for(plan: Mapping[TopicPartition, tuple[int, int]]) -> str:
    """``orders-p0-100-199_p1-0-49``: topic, then each read partition with its first and last
    offset (inclusive), in (topic, partition) order; several topics are joined by ``_``."""
    parts: list[str] = []
    topic = None
    for tp in sorted(plan):
        first, stop = plan[tp]
        if stop <= first:
            continue
        head = f"{tp.topic}-" if tp.topic != topic else ""
        topic = tp.topic
        parts.append(f"{head}p{tp.partition}-{first}-{stop - 1}")
    label = "_".join(parts)
    if len(label) > MAX_LABEL:
        first_topic = min(tp.topic for tp, (a, b) in plan.items() if b > a)
        digest = hashlib.sha256(label.encode()).hexdigest()[:16]
        label = f"{first_topic}-{len(parts)}parts-{digest}"
    return label


def _headers_type(pa: Any) -> Any:
    return pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))


def meta_schema(pa: Any, key_format: str) -> list[Any]:
    """The Arrow fields of the message metadata columns, in order (headers last)."""
    return [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("key", pa.string() if key_format == "str" else pa.binary()),
        pa.field("headers", _headers_type(pa)),
    ]


@dataclass
class KafkaSource:
    """One consumed batch of ``topics`` per :meth:`extract`, as Arrow record batches.

    Columns: ``topic``, ``partition``, ``offset``, ``timestamp`` (``timestamp[ms, UTC]``),
    ``key`` (binary, or ``key_format="str"``), ``value`` (binary) or, with
    ``value_format="json"``, one column per field of ``schema`` (a ``pyarrow.Schema``; inferred
    from the first batch when None, then kept), and ``headers`` (list of ``{key, value}``).

    The batch is that of ``consume``: every partition of ``topics`` (the share of ``member``
    of ``members``) from the group's committed offset, partition by partition, up to
    ``max_messages`` offsets and the end offsets as of the call (or ``stop_offsets``, a
    ``{(topic, partition): offset}`` cap). Its ranges are pinned in the group's offset metadata
    before reading, so until its commit every call returns the same ranges; ``since`` is
    ignored (the position is the group's). Nothing to read: no batches, no commit.
    """

    connection: KafkaConnection
    topics: str | Sequence[str]
    group_id: str
    max_messages: int = 100_000
    value_format: Literal["binary", "json"] = "binary"
    schema: pa.Schema | None = None
    key_format: Literal["binary", "str"] = "binary"
    member: int | None = None
    members: int | None = None
    start: Literal["earliest", "latest"] = "earliest"
    stop_offsets: Mapping[tuple[str, int], int] | None = None
    uri: str = field(init=False)
    #: After :meth:`extract`: every partition was planned up to its end (or ``stop_offsets``).
    drained: bool = field(init=False, default=False)
    #: After :meth:`extract`: the offsets its commit commits (``{}`` when nothing was read).
    last_offsets: dict[tuple[str, int], int] = field(init=False, default_factory=dict)
    _names: list[str] = field(init=False, repr=False)
    _inferred: Any = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self._names = _topics(self.topics)
        _check_member(self.member, self.members)
        if self.max_messages < 1:
            raise InvalidInput(
                f"KafkaSource needs max_messages >= 1, got {self.max_messages}",
                system=errors.SYSTEM,
            )
        if self.value_format not in ("binary", "json"):
            raise InvalidInput(
                f"KafkaSource value_format must be 'binary' or 'json', not {self.value_format!r}",
                system=errors.SYSTEM,
            )
        if self.key_format not in ("binary", "str"):
            raise InvalidInput(
                f"KafkaSource key_format must be 'binary' or 'str', not {self.key_format!r}",
                system=errors.SYSTEM,
            )
        if self.schema is not None:
            if self.value_format != "json":
                raise InvalidInput(
                    "KafkaSource schema= describes JSON values: pass value_format='json' too",
                    system=errors.SYSTEM,
                )
            self._check_names(self.schema.names)
        self.uri = f"kafka://{self.connection.brokers}/{','.join(self._names)}"

    @property
    def target(self) -> str:
        share = "" if self.members is None else f" (member {self.member} of {self.members})"
        return f"consumer group {self.group_id!r} on {self._names}{share}"

    def _check_names(self, names: Sequence[str]) -> None:
        clash = sorted(set(names) & set(META_COLUMNS))
        if clash:
            raise InvalidInput(
                f"Kafka JSON value field(s) {clash} of {self._names} clash with the message "
                f"columns {list(META_COLUMNS)}; rename them in schema= (or read "
                f"value_format='binary')",
                system=errors.SYSTEM,
                target=",".join(clash),
            )

    # -- reading ------------------------------------------------------------------------

    def _read(
        self,
    ) -> tuple[dict[TopicPartition, tuple[int, int]], dict[TopicPartition, Any], bool]:
        """Plan (or take the pinned plan), pin it, fetch it: one idempotent unit."""
        connection, group = self.connection, self.group_id
        admin = connection.admin()
        partitions = queue.member_partitions(
            queue.topic_partitions(admin, self._names), self.member, self.members
        )
        if not partitions:
            return {}, {}, True
        positions = queue.committed_positions(admin, group)
        reader = Reader(
            connection.new_consumer(group, enable_auto_commit=False), self._names, group
        )
        try:
            consumer = reader.consumer
            begins = consumer.beginning_offsets(partitions)
            ends = consumer.end_offsets(partitions)
            if self.stop_offsets is not None:
                caps = self.stop_offsets
                ends = {
                    tp: min(end, caps.get((tp.topic, tp.partition), end))
                    for tp, end in ends.items()
                }
            plan = queue.pinned_plan(partitions, positions, begins)
            drained = False
            if plan is None:
                committed = {tp: offset for tp, (offset, _) in positions.items()}
                plan = queue.plan_batch(
                    partitions, committed, begins, ends, self.start, self.max_messages
                )
                drained = all(stop >= ends[tp] for tp, (_, stop) in plan.items())
                pins = queue.pin_offsets(plan)
                if pins:
                    consumer.commit(pins)
            if not any(stop > first for first, stop in plan.values()):
                return {}, {}, True
            records = reader.fetch_planned(plan, stall_timeout=max(5.0, connection.request_timeout))
            return plan, records, drained
        finally:
            reader.close()

    def extract(self, since: Any = None) -> Extract:
        """One batch: its record batches, its label and the commit of exactly its offsets."""
        consume.call(
            self.connection,
            self.target,
            lambda: queue.require_topics(
                self.connection.admin(), self._names, self.connection.brokers
            ),
        )
        plan, records, self.drained = consume.call(self.connection, self.target, self._read)
        ranges = {tp: (a, b) for tp, (a, b) in plan.items() if b > a}
        self.last_offsets = {}
        if not ranges:
            return Extract(batches=[], label=None, commit=None)
        batches = self._to_arrow(records)
        offsets = {(tp.topic, tp.partition): stop for tp, (_, stop) in ranges.items()}
        self.last_offsets = dict(offsets)
        connection, group, target = self.connection, self.group_id, self.target

        def commit() -> None:
            consume.call(
                connection,
                target,
                lambda: queue.commit_offsets(
                    connection.new_consumer(group, enable_auto_commit=False), offsets
                ),
            )

        return Extract(batches=batches, label=label_for(ranges), commit=commit)

    # -- Arrow --------------------------------------------------------------------------

    def _to_arrow(self, records: Mapping[TopicPartition, list[Any]]) -> list[pa.RecordBatch]:
        pa = _pyarrow()
        out: list[Any] = []
        for tp in sorted(records):
            recs = records[tp]
            for i in range(0, len(recs), BATCH_ROWS):
                out.append(self._batch(pa, tp, recs[i : i + BATCH_ROWS]))
        return out

    def _batch(self, pa: Any, tp: TopicPartition, recs: list[Any]) -> Any:
        n = len(recs)
        fields = meta_schema(pa, self.key_format)
        topic = pa.array([tp.topic] * n, pa.string())
        partition = pa.array([tp.partition] * n, pa.int32())
        offset = pa.array([r.offset for r in recs], pa.int64())
        timestamp = pa.array(
            [r.timestamp if r.timestamp >= 0 else None for r in recs],
            pa.timestamp("ms", tz="UTC"),
        )
        key = pa.array([r.key for r in recs], pa.binary())
        if self.key_format == "str":
            try:
                key = key.cast(pa.string())
            except pa.ArrowInvalid as exc:
                raise self._bad(tp, recs, "key is not UTF-8 text (key_format='str')", exc) from exc
        headers = self._headers(pa, recs)
        values = [r.value for r in recs]
        columns = [topic, partition, offset, timestamp, key]
        if self.value_format == "json":
            table = self._json(pa, tp, recs, values)
            columns += table.columns
            fields += list(table.schema)
        else:
            columns.append(pa.array(values, pa.binary()))
            fields.append(pa.field("value", pa.binary()))
        columns.append(headers)
        order = [*fields[:5], *fields[6:], fields[5]]  # headers last
        arrays = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(order))

    @staticmethod
    def _headers(pa: Any, recs: list[Any]) -> Any:
        kind = _headers_type(pa)
        if not any(r.headers for r in recs):
            offsets = pa.array([0] * (len(recs) + 1), pa.int32())
            empty = pa.array([], kind.value_type)
            return pa.ListArray.from_arrays(offsets, empty, type=kind)
        return pa.array(
            [[{"key": k, "value": v} for k, v in r.headers] if r.headers else [] for r in recs],
            kind,
        )

    def _json(self, pa: Any, tp: TopicPartition, recs: list[Any], values: list[Any]) -> Any:
        pj = pa.json
        schema = self.schema if self.schema is not None else self._inferred
        lines = [
            b"{}"
            if v is None
            else (v.replace(b"\n", b" ").replace(b"\r", b" ") if b"\n" in v or b"\r" in v else v)
            for v in values
        ]
        longest = max(map(len, lines))
        parse = pj.ParseOptions(
            explicit_schema=schema,
            unexpected_field_behavior=(
                "ignore" if self.schema is not None else "error" if schema is not None else "infer"
            ),
        )
        read = pj.ReadOptions(block_size=max(1 << 20, 2 * longest + 2), use_threads=False)
        try:
            table = pj.read_json(
                io.BytesIO(b"\n".join(lines)), read_options=read, parse_options=parse
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise self._json_error(tp, recs, schema, exc) from exc
        if schema is None:
            self._check_names(table.schema.names)
            self._inferred = table.schema
        elif table.schema != schema:
            table = table.select(schema.names).cast(schema)
        return table

    def _json_error(
        self, tp: TopicPartition, recs: list[Any], schema: Any, exc: Exception
    ) -> InvalidInput:
        """Name the first message that does not parse (or brings an unknown field)."""
        import json

        known = set(schema.names) if schema is not None else None
        for r in recs:
            if r.value is None:
                continue
            try:
                doc = json.loads(r.value)
            except ValueError as bad:
                return self._bad(tp, [r], f"value is not JSON ({bad})", exc)
            if not isinstance(doc, dict):
                return self._bad(
                    tp, [r], f"value is a JSON {type(doc).__name__}, not an object", exc
                )
            if known is not None and self.schema is None and set(doc) - known:
                extra = sorted(set(doc) - known)
                return self._bad(
                    tp,
                    [r],
                    f"field(s) {extra} not in the schema inferred from the first batch "
                    f"({', '.join(known)}); pass schema= to KafkaSource",
                    exc,
                )
        return self._bad(tp, recs, f"values do not fit the schema {schema}", exc)

    def _bad(self, tp: TopicPartition, recs: list[Any], why: str, exc: Exception) -> InvalidInput:
        where = (
            f"offset {recs[0].offset}"
            if len(recs) == 1
            else f"offsets {recs[0].offset}-{recs[-1].offset}"
        )
        return InvalidInput(
            f"Kafka topic {tp.topic!r} partition {tp.partition} {where}: {why} "
            f"({type(exc).__name__}: {exc})",
            system=errors.SYSTEM,
            target=tp.topic,
        )


# --------------------------------------------------------------------------- the task


@dataclass
class ConsumeToStoreResult:
    """What ``consume_to_store`` moved: messages, bytes written, one file per batch, where
    the group's offsets ended, and why the loop stopped (``end``, ``max_batches``)."""

    messages: int = 0
    bytes: int = 0
    batches: int = 0
    files: list[str] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_by: str = ""


class ConsumeToStore(KafkaTask):
    """Kafka -> files in an object store: one file per consumed batch, offsets committed
    after each file (and the sink's state object) is stored.

    Loops ``transfer(KafkaSource(...), StoreSink(store, prefix, format), name)`` until the
    partitions are read up to their end offsets as of the start, or ``max_batches``. Each
    file is ``<prefix>/<name>-<topic>-p<partition>-<first>-<last>...-00000.parquet``; a rerun
    after a crash anywhere rewrites the same keys (the batch's ranges are pinned in the group's
    offset metadata until its commit): no message lost, none stored twice. ``name`` (default:
    the topics, plus ``-m<member>`` with ``members``) names the sink's state object: give each
    parallel member its own. Each batch is retried whole on transient errors.
    """

    lineage = kafka_lineage.consume_to_store_lineage

    def run(
        self,
        connection: KafkaConnection,
        topics: str | Sequence[str],
        group_id: str,
        store: ObjectStore,
        prefix: str = "",
        name: str | None = None,
        max_messages: int = 100_000,
        max_batches: int | None = None,
        value_format: Literal["binary", "json"] = "binary",
        schema: pa.Schema | None = None,
        key_format: Literal["binary", "str"] = "binary",
        member: int | None = None,
        members: int | None = None,
        start: Literal["earliest", "latest"] = "earliest",
        format: str = "parquet",
        compression: str | None = None,
    ) -> ConsumeToStoreResult:
        names = _topics(topics)
        _check_member(member, members)
        if name is None:
            name = "-".join(names) + ("" if members is None else f"-m{member}")
        started = time.perf_counter()
        probe = KafkaSource(
            connection, names, group_id, member=member, members=members, max_messages=1
        )
        stops = consume.call(connection, probe.target, lambda: _end_offsets(probe))
        source = KafkaSource(
            connection,
            names,
            group_id,
            max_messages=max_messages,
            value_format=value_format,
            schema=schema,
            key_format=key_format,
            member=member,
            members=members,
            start=start,
            stop_offsets=stops,
        )
        sink = StoreSink(
            store,
            prefix,
            format=format,
            max_file_rows=max(max_messages, 1),
            compression=compression,
        )
        out = ConsumeToStoreResult()
        committed: dict[tuple[str, int], int] = {}
        recording = _Recording(source, committed)

        def one() -> TransferResult:
            committed.clear()
            return transfer(recording, sink, name=name)

        while True:
            if max_batches is not None and out.batches >= max_batches:
                out.stopped_by = "max_batches"
                break
            result = self.retrying(one)
            if not committed:
                out.stopped_by = "end"
                break
            out.batches += 1
            out.messages += result.rows
            out.bytes += result.bytes
            out.files.extend(result.written)
            out.committed.update(committed)
            if source.drained:
                out.stopped_by = "end"
                break
        out.seconds = time.perf_counter() - started
        run_logger().info(
            "consume %s -> %s: %d messages in %d files (%d bytes) in %.2f s",
            source.uri,
            sink.uri,
            out.messages,
            len(out.files),
            out.bytes,
            out.seconds,
        )
        summarise(
            self.name,
            [
                {
                    "source": source.uri,
                    "target": sink.uri,
                    "group": group_id,
                    "messages": out.messages,
                    "bytes": out.bytes,
                    "batches": out.batches,
                    "files": len(out.files),
                    "seconds": round(out.seconds, 3),
                    "stopped_by": out.stopped_by,
                }
            ],
            target=sink.uri,
        )
        return out


def _end_offsets(source: KafkaSource) -> dict[tuple[str, int], int]:
    """The end offsets of ``source``'s partitions now: where ``consume_to_store`` stops."""
    admin = source.connection.admin()
    partitions = queue.member_partitions(
        queue.topic_partitions(admin, source._names), source.member, source.members
    )
    if not partitions:
        return {}
    consumer = source.connection.new_consumer(None, enable_auto_commit=False)
    try:
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close(autocommit=False)
    return {(tp.topic, tp.partition): end for tp, end in ends.items()}


@dataclass
class _Recording:
    """A source that notes the offsets its extract committed (for the task's result)."""

    source: KafkaSource
    committed: dict[tuple[str, int], int]
    uri: str = field(init=False)

    def __post_init__(self) -> None:
        self.uri = self.source.uri

    def extract(self, since: Any = None) -> Extract:
        extract = self.source.extract(since)
        if extract.commit is None:
            return extract
        inner = extract.commit
        offsets = self.source.last_offsets

        def commit() -> None:
            inner()
            self.committed.update(offsets)

        return Extract(extract.batches, extract.lower, extract.upper, extract.label, commit)


endpoint_uris.register(KafkaSource, kafka_lineage.source_uris)

consume_to_store = ConsumeToStore()
