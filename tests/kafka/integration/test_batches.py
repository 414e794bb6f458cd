"""What ``consume`` promises about its batches (issue 13, items 2 and 3).

* Without a commit, every call returns the same batch, on multi-partition topics too: the
  group's committed offsets decide it, partitions in order, each up to its end as of the call.
* Parallel calls split partitions through ``member`` / ``members``: no duplicates, nothing lost.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prefect import flow, unmapped

from flowport.errors import InvalidInput
from flowport_kafka import Batch, KafkaConnection, Record, commit, consume, produce

pytestmark = pytest.mark.usefixtures("prefect_server")

PER_PARTITION = 100
BATCH = 250
REPEAT = 20


def _positions(batch: Batch) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in batch]


def _expected_batches(partitions: int) -> list[list[tuple[int, int]]]:
    """The documented order: partition by partition, from the committed offset, BATCH a time."""
    everything = [(p, o) for p in range(partitions) for o in range(PER_PARTITION)]
    return [everything[i : i + BATCH] for i in range(0, len(everything), BATCH)]


@pytest.mark.parametrize("partitions", [3, 6])
def test_consume_without_commit_returns_the_same_batch_until_commit(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str, partitions: int
) -> None:
    topic = make_topic(partitions)
    produce.fn(
        kafka_block,
        topic,
        [Record(b"%d" % i, partition=i % partitions) for i in range(PER_PARTITION * partitions)],
    )
    expected = _expected_batches(partitions)
    for want in expected:
        for _ in range(REPEAT):
            batch = consume.fn(kafka_block, topic, group, max_messages=BATCH)
            assert _positions(batch) == want
        commit.fn(kafka_block, batch)  # the next batch continues where this one ended
    assert len(consume.fn(kafka_block, topic, group, max_messages=BATCH)) == 0


def test_parallel_members_split_partitions_without_duplicates(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(6)
    n = 3000
    produce.fn(kafka_block, topic, [b"m-%d" % i for i in range(n)])  # keyless: spread out

    @flow
    def drain() -> list[list[Batch]]:
        rounds = []
        while True:
            futures = consume.map(
                unmapped(kafka_block),
                unmapped(topic),
                unmapped(group),
                max_messages=unmapped(400),
                member=[0, 1],
                members=unmapped(2),
            )
            batches = [f.result() for f in futures]
            if not any(batches):
                return rounds
            for f in commit.map(unmapped(kafka_block), batches):
                f.result()
            rounds.append(batches)

    rounds = drain()
    read = [(m.partition, m.offset) for batches in rounds for b in batches for m in b]
    values = {m.value for batches in rounds for b in batches for m in b}
    duplicates = len(read) - len(set(read))
    lost = n - len(values)
    assert (lost, duplicates) == (0, 0)
    # each member read only its own partitions: member 0 the even ones, member 1 the odd ones
    for batches in rounds:
        assert {m.partition % 2 for m in batches[0]} <= {0}
        assert {m.partition % 2 for m in batches[1]} <= {1}


def test_member_and_members_are_checked(kafka_block: KafkaConnection, group: str) -> None:
    for member, members in [(2, 2), (0, None), (None, 2), (-1, 2), (0, 0)]:
        with pytest.raises(InvalidInput, match="member"):
            consume.fn(kafka_block, "any", group, member=member, members=members)
