"""The held batch of iteration (``bus._held``) against a plain model: whatever the
order of a batch across partitions and wherever the application stopped, what goes
back to the driver is exactly what it did not get (or, closing, did not finish), and
a driver's ``GivenBack`` keeps exactly those messages, in order, to return again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import bus
from bus._held import Held
from bus.spi import GivenBack, consumed_message


@st.composite
def batches(draw: st.DrawFn) -> list[bus.Message]:
    """A batch as a driver returns it: partitions interleaved, each in offset order."""
    starts = draw(st.lists(st.integers(0, 1000), min_size=1, max_size=4))
    counts = [draw(st.integers(0, 6)) for _ in starts]
    order = draw(st.permutations([p for p, n in enumerate(counts) for _ in range(n)]))
    next_offset = dict(enumerate(starts))
    out = []
    for p in order:
        out.append(consumed_message("t", b"v", None, (), p, next_offset[p], None))
        next_offset[p] += 1
    return out


@given(batches(), st.data())
def test_going_on_gives_back_each_partition_from_its_first_message_not_handed_out(
    batch: list[bus.Message], data: st.DataObject
) -> None:
    held = Held()
    held.fill(batch, 0.0)
    handed = held.take(data.draw(st.integers(0, len(batch))))
    rest = batch[len(handed) :]
    positions = held.positions(held.next, every=False)
    expected = {}
    for m in rest:
        expected.setdefault(bus.TopicPartition(m.topic, m.partition), m.offset)
    assert positions == expected
    given = GivenBack()
    given.last = batch
    returned = {(m.topic, m.partition): m.offset + 1 for m in batch}
    processed: dict[tuple[str, int], int] = {}
    given.take_back(positions, returned, processed)  # type: ignore[arg-type]
    assert given.kept == rest  # every message not handed out, in order
    assert processed == {(tp.topic, tp.partition): o for tp, o in positions.items()}
    assert set(returned) == {(m.topic, m.partition) for m in handed} - set(processed)
    again = given.take(len(rest), returned)  # type: ignore[arg-type]
    assert again == rest and not given.kept


@given(batches(), st.data())
def test_closing_gives_back_the_unfinished_message_and_counts_the_rest_processed(
    batch: list[bus.Message], data: st.DataObject
) -> None:
    held = Held()
    held.fill(batch, 0.0)
    held.take(data.draw(st.integers(0, len(batch))))
    positions = held.positions(max(held.next - 1, 0), every=True)
    finished = batch[: max(held.next - 1, 0)]
    for m in batch:
        tp = bus.TopicPartition(m.topic, m.partition)
        # Below the position: finished; from it on: not.
        assert (m.offset < positions[tp]) == (m in finished)


@given(batches(), st.data())
def test_dropping_a_partition_keeps_what_was_handed_out_and_the_others(
    batch: list[bus.Message], data: st.DataObject
) -> None:
    held = Held()
    held.fill(batch, 0.0)
    handed = held.take(data.draw(st.integers(0, len(batch))))
    gone = data.draw(st.sampled_from(sorted({m.partition for m in batch} | {99})))
    held.drop({("t", gone)})
    assert held.messages[: held.next] == handed
    assert held.messages[held.next :] == [m for m in batch[len(handed) :] if m.partition != gone]
