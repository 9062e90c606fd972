"""Effectively-once publishing without transactions: producer names and sequence ids that a
replay reproduces exactly.

Pulsar's broker de-duplication keeps, per topic and producer name, the highest sequence id it
persisted, and drops (while answering success) any message whose sequence id is not above it.
So an output is written once if

- its producer has the same name on every run: one per (pipeline, stage, output topic, input
  partition), see ``producer_name``;
- its sequence id is a function of the input message's position only, strictly increasing
  along the partition: ``sequence_id`` packs (ledger id, entry id, batch index, output index)
  into the 63 bits of a non-negative signed 64-bit id;
- outputs are written in input order, one message per entry (producer batching off: the
  broker judges a whole batch entry by its first sequence id, and a replay forms other
  batches).

Bit layout, most significant first (the sign bit stays 0)::

    | ledger id: 32 | entry id: 18 | batch index: 10 | output index: 3 |

Limits, checked for every message (one outside them is dead-lettered as
``position-out-of-range``): ledger ids below 2**32 (BookKeeper allocates them from one
counter per cluster: about 4.3 billion ledgers), entries per ledger below 262,144 (the
broker rolls a ledger over at ``managedLedgerMaxEntriesPerLedger``, 50,000 by default), at
most 1,024 messages per producer batch (the clients' ``batchingMaxMessages`` is 1,000 by
default) and 8 outputs per input message. Ledger ids of one topic partition only grow, so
the ids grow along the partition.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

LEDGER_BITS = 32
ENTRY_BITS = 18
BATCH_BITS = 10
OUTPUT_BITS = 3
assert LEDGER_BITS + ENTRY_BITS + BATCH_BITS + OUTPUT_BITS == 63

MAX_OUTPUTS_PER_INPUT = 1 << OUTPUT_BITS
NON_PARTITIONED = -1
"""The partition of a message from a non-partitioned topic (as Pulsar reports it)."""
PRODUCER_NAME_LIMIT = 200

_PARTITION_SUFFIX = re.compile(r"-partition-(\d+)$")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class PositionOutOfRange(ValueError):
    """A message position that does not fit the sequence-id layout."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a message sits in its topic partition (from its Pulsar message id)."""

    partition: int
    ledger_id: int
    entry_id: int
    batch_index: int
    """-1 for a message that is not part of a producer batch."""


def sequence_id(position: Position, output_index: int = 0) -> int:
    """The sequence id of the ``output_index``-th output written for the message at
    ``position``; strictly increasing in (ledger, entry, batch index, output index).
    Raises PositionOutOfRange when a part does not fit its bits."""
    batch = max(position.batch_index, 0)
    parts = (
        ("ledger id", position.ledger_id, LEDGER_BITS),
        ("entry id", position.entry_id, ENTRY_BITS),
        ("batch index", batch, BATCH_BITS),
        ("output index", output_index, OUTPUT_BITS),
    )
    value = 0
    for what, part, bits in parts:
        if not 0 <= part < 1 << bits:
            raise PositionOutOfRange(
                f"{what} {part} of message {position} does not fit the {bits} bits an "
                "effectively-once sequence id gives it"
            )
        value = value << bits | part
    return value


def partition_of(topic: str) -> int:
    """The partition index of a partition topic name; NON_PARTITIONED for any other."""
    match = _PARTITION_SUFFIX.search(topic)
    return int(match.group(1)) if match else NON_PARTITIONED


def producer_name(pipeline: str, stage: str, output_topic: str, partition: int) -> str:
    """The name of the producer that writes a stage's outputs for one input partition to one
    output topic: the same on every run (restarts, SIGKILLs, rescheduling), so the broker's
    de-duplication recognizes a replay. Unique per (pipeline, stage, output, partition);
    a digest keeps long names within Pulsar's limits."""
    lane = "np" if partition == NON_PARTITIONED else f"p{partition}"
    readable = _UNSAFE.sub("_", f"streamvane.{pipeline}.{stage}.{output_topic.rsplit('/', 1)[-1]}")
    digest = hashlib.sha256(f"{pipeline}\0{stage}\0{output_topic}".encode()).hexdigest()[:12]
    return f"{readable[: PRODUCER_NAME_LIMIT - 20]}.{digest}.{lane}"
