from __future__ import annotations

import pytest

from streamvane_operator.pulsar.admin import TopicName
from streamvane_operator.pulsar.entries import EntryMalformed, entry_payloads
from streamvane_operator.pulsar.testing import FakePulsar, batch_body

TOPIC = TopicName("t", "ns", "model-versions")


def test_entry_payloads_splits_a_batch_in_publish_order_when_it_holds_several_messages() -> None:
    payloads = [b'{"n": 0}', b"", b'{"n": 2}' * 40]
    assert entry_payloads(batch_body(payloads), 3) == payloads


def test_entry_payloads_raises_when_the_body_is_shorter_than_announced() -> None:
    with pytest.raises(EntryMalformed):
        entry_payloads(batch_body([b'{"n": 0}']), 2)


def test_newest_payloads_reads_back_across_batches_until_the_oldest_entry() -> None:
    fake = FakePulsar(topics={str(TOPIC): 0})
    fake.entries[str(TOPIC)] = [[b"a"], [b"b", b"c"], [b"d"]]

    assert fake.admin().newest_payloads(TOPIC, 10) == [b"d", b"c", b"b", b"a"]
    examined = [c for c in fake.calls if c.endswith("/examinemessage")]
    assert len(examined) == 4, "the position past the oldest ends the read, without retries"


def test_newest_payloads_stops_early_when_enough_was_read() -> None:
    fake = FakePulsar(topics={str(TOPIC): 0})
    fake.entries[str(TOPIC)] = [[b"a"], [b"b", b"c"], [b"d"]]

    found = fake.admin().newest_payloads(TOPIC, 10, lambda read: len(read) >= 3)

    assert found == [b"d", b"c", b"b"] and len(fake.calls) == 2


def test_newest_payloads_reads_nothing_when_the_topic_is_empty_or_missing() -> None:
    fake = FakePulsar(topics={str(TOPIC): 0})
    assert fake.admin().newest_payloads(TOPIC, 4) == []
    assert fake.admin().newest_payloads(TopicName("t", "ns", "missing"), 4) == []
