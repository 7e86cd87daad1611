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
