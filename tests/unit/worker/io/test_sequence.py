from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamvane_worker.io.sequence import (
    BATCH_BITS,
    ENTRY_BITS,
    LEDGER_BITS,
    MAX_OUTPUTS_PER_INPUT,
    NON_PARTITIONED,
    PRODUCER_NAME_LIMIT,
    Position,
    PositionOutOfRange,
    partition_of,
    producer_name,
    sequence_id,
)

INT64_MAX = 2**63 - 1

positions = st.builds(
    Position,
    partition=st.just(0),
    ledger_id=st.integers(0, 2**LEDGER_BITS - 1),
    entry_id=st.integers(0, 2**ENTRY_BITS - 1),
    batch_index=st.integers(-1, 2**BATCH_BITS - 1),
)
outputs = st.integers(0, MAX_OUTPUTS_PER_INPUT - 1)


@given(positions, outputs, positions, outputs)
def test_sequence_id_grows_with_the_position_when_positions_are_in_range(
    a: Position, i: int, b: Position, j: int
) -> None:
    key_a = (a.ledger_id, a.entry_id, max(a.batch_index, 0), i)
    key_b = (b.ledger_id, b.entry_id, max(b.batch_index, 0), j)
    assert (sequence_id(a, i) < sequence_id(b, j)) == (key_a < key_b)
    assert (sequence_id(a, i) == sequence_id(b, j)) == (key_a == key_b)


def test_sequence_id_fits_a_signed_64_bit_id_when_every_part_is_at_its_limit() -> None:
    last = Position(0, 2**LEDGER_BITS - 1, 2**ENTRY_BITS - 1, 2**BATCH_BITS - 1)
    assert sequence_id(last, MAX_OUTPUTS_PER_INPUT - 1) == INT64_MAX
    assert sequence_id(Position(0, 0, 0, -1)) == 0


def test_sequence_id_is_the_same_when_the_message_is_redelivered() -> None:
    position = Position(3, 812_345, 49_999, 999)
    assert sequence_id(position) == sequence_id(Position(3, 812_345, 49_999, 999))


def test_sequence_id_orders_outputs_of_one_input_before_the_next_input_when_a_stage_emits_several() -> (
    None
):
    first, second = Position(0, 7, 10, 3), Position(0, 7, 10, 4)
    ids = [sequence_id(first, k) for k in range(MAX_OUTPUTS_PER_INPUT)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[-1] < sequence_id(second, 0)


@pytest.mark.parametrize(
    ("position", "output", "part"),
    [
        (Position(0, 2**LEDGER_BITS, 0, 0), 0, "ledger id"),
        (Position(0, 1, 2**ENTRY_BITS, 0), 0, "entry id"),
        (Position(0, 1, 0, 2**BATCH_BITS), 0, "batch index"),
        (Position(0, 1, 0, 0), MAX_OUTPUTS_PER_INPUT, "output index"),
        (Position(0, -1, 0, 0), 0, "ledger id"),
    ],
)
def test_sequence_id_refuses_the_position_when_a_part_does_not_fit(
    position: Position, output: int, part: str
) -> None:
    with pytest.raises(PositionOutOfRange, match=part):
        sequence_id(position, output)


def test_partition_of_reads_the_index_when_the_topic_is_a_partition() -> None:
    assert partition_of("persistent://t/n/in-partition-12") == 12
    assert partition_of("persistent://t/n/in") == NON_PARTITIONED


def test_producer_name_is_stable_and_distinct_when_stage_output_or_partition_differ() -> None:
    name = producer_name("p", "embed", "persistent://t/n/out", 0)
    assert name == producer_name("p", "embed", "persistent://t/n/out", 0)
    others = {
        producer_name("p", "embed", "persistent://t/n/out", 1),
        producer_name("p", "embed", "persistent://t/n/out", NON_PARTITIONED),
        producer_name("p", "tag", "persistent://t/n/out", 0),
        producer_name("p", "embed", "persistent://t/other/out", 0),
        producer_name("q", "embed", "persistent://t/n/out", 0),
    }
    assert name not in others and len(others) == 5
    assert name.startswith("streamvane.p.embed.out.")


def test_producer_name_stays_within_the_limit_when_names_are_long() -> None:
    name = producer_name("p" * 200, "s" * 40, "persistent://t/n/" + "o" * 200, 255)
    assert len(name) <= PRODUCER_NAME_LIMIT
