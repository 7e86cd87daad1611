from __future__ import annotations

from stream_server.core.expiry import ExpiryBook


def test_a_key_expires_at_its_time_and_only_once() -> None:
    book = ExpiryBook()
    assert book.next_deadline() is None
    book.expire_at("a", 10.0)
    book.expire_at("b", 5.0)
    assert book.next_deadline() == 5.0
    assert book.handle_timer(4.9) == []
    assert book.handle_timer(5.0) == ["b"]
    assert book.next_deadline() == 10.0
    assert book.handle_timer(20.0) == ["a"]
    assert book.handle_timer(30.0) == [] and len(book) == 0


def test_renewing_moves_the_time_and_dropping_forgets_it() -> None:
    book = ExpiryBook()
    book.expire_at("a", 5.0)
    book.expire_at("a", 8.0)
    assert book.handle_timer(6.0) == [] and "a" in book
    book.drop("a")
    book.drop("never-set")
    assert book.handle_timer(9.0) == [] and book.next_deadline() is None


def test_many_keys_come_out_in_the_order_they_were_set() -> None:
    book = ExpiryBook()
    for i in range(100):
        book.expire_at(f"k{i}", float(100 - i))
    assert book.handle_timer(100.0) == [f"k{i}" for i in range(100)]


def test_a_replaced_or_dropped_time_is_not_the_next_deadline() -> None:
    book = ExpiryBook()
    book.expire_at("a", 5.0)
    book.expire_at("b", 6.0)
    book.expire_at("a", 8.0)  # later: 5.0 is no longer anyone's time
    assert book.next_deadline() == 6.0
    book.drop("b")
    assert book.next_deadline() == 8.0
    book.expire_at("a", 2.0)  # earlier again
    assert book.next_deadline() == 2.0
    assert book.handle_timer(9.0) == ["a"] and book.next_deadline() is None


def test_a_key_renewed_many_times_before_it_is_due_keeps_the_book_small() -> None:
    book = ExpiryBook()
    book.expire_at("other", 1e9)
    for i in range(10_000):  # an MQTT session's idle timeout, pushed back by each message
        book.expire_at("busy", 100.0 + i)
    assert len(book._heap) <= 2 * len(book) + 16  # stale times are let go, not kept for ever
    assert book.next_deadline() == 100.0 + 9_999
    book.setdefault("busy", 1.0)  # has a time: kept
    assert book.handle_timer(10_099.0) == ["busy"]
