"""Events as client-go's recorder posts them: the same Event again is a count on the first one,
a reason's many different messages become one combined Event, and a task that posts too many has
the rest dropped. Time is a number the test moves."""

from __future__ import annotations

from typing import Any

from nightshift.events import BURST, COMBINED, REFILL, SIMILAR, WINDOW, EventBook, Record

REF: dict[str, Any] = {"metadata": {"name": "t", "namespace": "ns", "uid": "u1"}}
OTHER: dict[str, Any] = {"metadata": {"name": "u", "namespace": "ns", "uid": "u2"}}


def record(book: EventBook, message: str, now: float, ref: dict[str, Any] = REF) -> Record:
    found = book.record(ref, "Warning", "JobCreateFailed", message, now)
    assert found is not None
    return found


def test_the_same_event_again_counts_on_the_first() -> None:
    book = EventBook()
    first = record(book, "quota exceeded", 0.0)
    again = record(book, "quota exceeded", 30.0)
    assert again is first
    assert (first.count, first.first, first.last) == (2, 0.0, 30.0)
    other = record(book, "quota exceeded", 31.0, OTHER)  # another task: an Event of its own
    assert other is not first
    assert other.count == 1


def test_after_a_quiet_window_it_is_a_new_event() -> None:
    book = EventBook()
    first = record(book, "quota exceeded", 0.0)
    later = record(book, "quota exceeded", WINDOW + 1)
    assert later is not first
    assert later.count == 1


def test_a_reasons_tenth_different_message_is_combined_with_those_after_it() -> None:
    book = EventBook()
    separate = [record(book, f"Job j{i}: quota exceeded", float(i)) for i in range(SIMILAR - 1)]
    assert len({id(r) for r in separate}) == SIMILAR - 1
    combined = record(book, "Job j9: quota exceeded", 9.0)
    assert combined.message == COMBINED + "Job j9: quota exceeded"
    also = record(book, "Job j10: quota exceeded", 10.0)
    assert also is combined
    assert (also.count, also.message) == (2, COMBINED + "Job j10: quota exceeded")
    # A message seen before still counts on its own Event.
    assert record(book, "Job j0: quota exceeded", 11.0) is separate[0]
    # Another reason is not combined with these.
    started = book.record(REF, "Normal", "RunStarted", "run 1 started", 12.0)
    assert started is not None
    assert started.message == "run 1 started"


def test_a_task_that_posts_too_many_has_the_rest_dropped_until_its_bucket_refills() -> None:
    book = EventBook()
    taken = [book.record(REF, "Normal", f"R{i}", "m", 0.0) for i in range(BURST + 5)]
    assert sum(r is not None for r in taken) == BURST
    assert book.record(OTHER, "Normal", "R", "m", 0.0) is not None  # its own bucket
    assert book.record(REF, "Normal", "R", "m", REFILL / 2) is None
    assert book.record(REF, "Normal", "R", "m", REFILL) is not None
    # Once a minute (a task at the minimum interval, a few Events a run) is never dropped.
    book = EventBook()
    for minute in range(600):
        for reason in ("RunStarted", "RunSucceeded", "RunFailed"):
            assert book.record(REF, "Normal", reason, f"run {minute}", minute * 60.0) is not None


def test_memory_is_bounded_and_a_forgotten_task_starts_afresh() -> None:
    book = EventBook(records=50)
    for i in range(200):
        ref = {"metadata": {"name": f"t{i}", "namespace": "ns", "uid": str(i)}}
        book.record(ref, "Normal", "RunStarted", "m", float(i))
    assert len(book) == 50
    for _ in range(BURST):
        record(book, "m", 1000.0)
    assert book.record(REF, "Warning", "JobCreateFailed", "m", 1000.0) is None
    book.forget(("ns", "t"))
    assert book.record(REF, "Warning", "JobCreateFailed", "m", 1000.0) is not None
