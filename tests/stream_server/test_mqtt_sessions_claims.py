"""The claim book: one gateway holds each session, a claim race has one winner everywhere."""

from __future__ import annotations

import itertools

import pytest

from broker.errors import ProtocolError
from stream_server.core.claims import (
    Claim,
    ClaimBook,
    ClearClaim,
    CountUnknown,
    DropSession,
    ImpossibleClaim,
    PublishClaim,
    claim_messages,
)

WALL = 101.0  # the wall clock while these claims (made at about 100.0) arrive


def test_a_claim_is_published_and_released() -> None:
    book = ClaimBook("gw-a")
    [publish] = book.claim("s1", 100.0, now=0.0)
    assert publish == PublishClaim("s1", Claim("gw-a", 100.0))
    assert book.seen("s1", Claim("gw-a", 100.0), 0.1, WALL) == []  # our own claim coming back
    assert not book.held_elsewhere("s1", 0.2)
    assert book.release("s1") == [ClearClaim("s1")]
    assert book.release("s1") == []


def test_another_gateways_session_is_quiet_here() -> None:
    book = ClaimBook("gw-b")
    book.seen("s1", Claim("gw-a", 100.0), 0.0, WALL)
    assert book.held_elsewhere("s1", 1.0)
    book.seen("s1", None, 2.0, WALL)  # cleared: closed there
    assert not book.held_elsewhere("s1", 3.0)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_race_has_one_winner_whatever_order_the_claims_arrive_in(order: tuple[int, ...]) -> None:
    gateways = ["gw-a", "gw-b", "gw-c"]
    claims = [Claim("gw-b", 100.5), Claim("gw-a", 100.5), Claim("gw-c", 99.0)]  # gw-c is first
    books = {g: ClaimBook(g) for g in gateways}
    dropped: set[str] = set()
    for claim in claims:
        books[claim.gateway_id].claim("s1", claim.claimed_at, now=0.0)
    for g, book in books.items():
        for i in order:
            for action in book.seen("s1", claims[i], 0.5, WALL):
                if isinstance(action, DropSession):
                    dropped.add(g)
    winners = {book.owners["s1"].gateway_id for book in books.values()}
    assert winners == {"gw-c"}
    assert dropped == {"gw-a", "gw-b"}


def test_the_winner_re_publishes_when_a_losing_claim_arrives_later() -> None:
    book = ClaimBook("gw-a")
    book.claim("s1", 100.0, now=0.0)
    assert book.seen("s1", Claim("gw-b", 101.0), 0.5, WALL) == [PublishClaim("s1", Claim("gw-a", 100.0))]
    assert book.owners["s1"].gateway_id == "gw-a"


def test_unclaimed_text_counts_as_unknown_only_after_the_window() -> None:
    book = ClaimBook("gw-a", window_s=2.0)
    assert book.next_deadline() is None
    book.unclaimed_text("s1", 10.0)
    book.unclaimed_text("s1", 11.0)  # the first deadline stands
    assert book.next_deadline() == 12.0
    assert book.handle_timer(11.9) == []
    assert book.handle_timer(12.0) == [CountUnknown("s1")]
    assert book.next_deadline() is None


def test_a_claim_inside_the_window_keeps_it_quiet() -> None:
    book = ClaimBook("gw-a", window_s=2.0)
    book.unclaimed_text("s1", 10.0)
    book.seen("s1", Claim("gw-b", 5.0), 11.0, WALL)
    assert book.handle_timer(20.0) == []
    assert book.held_elsewhere("s1", 20.0)


def test_a_claim_is_a_lease_renewed_by_its_holder_and_lapsing_without_it() -> None:
    holder, other = ClaimBook("gw-a", lease_s=60.0), ClaimBook("gw-b", lease_s=60.0)
    [first] = holder.claim("s1", 100.0, now=0.0)
    assert isinstance(first, PublishClaim)
    other.seen("s1", first.claim, 0.0, WALL)
    assert holder.next_deadline() == 30.0
    assert holder.handle_timer(29.0) == []
    [renewal] = holder.handle_timer(30.0)
    assert renewal == first and holder.next_deadline() == 60.0
    other.seen("s1", renewal.claim, 30.0, WALL)
    assert other.held_elsewhere("s1", 89.0)
    # the holder crashed: no renewal after t=30, so the claim lapses at 30 + 60
    assert not other.held_elsewhere("s1", 90.0)
    assert "s1" not in other.owners
    assert holder.release("s1") == [ClearClaim("s1")] and holder.next_deadline() is None


def test_a_claim_with_an_impossible_time_takes_no_session() -> None:
    """The attack: a forged claim with ``claimed_at: 0`` closed a live session. Now: refused by the
    decoder (not a positive time), and a claim from the future or from long before ours is ignored."""
    with pytest.raises(ProtocolError) as err:
        claim_messages.decode(b'{"type":"claim","gateway_id":"evil","claimed_at":0}')
    assert err.value.code == "impossible_claim"
    book = ClaimBook("gw-a", skew_s=10.0)
    book.claim("s1", 100.0, now=0.0)
    future = Claim("evil", WALL + 3600.0)
    early = Claim("evil", 100.0 - 11.0)
    assert book.seen("s1", future, 0.5, WALL) == [ImpossibleClaim("s1", "evil", "future")]
    assert book.seen("s1", early, 0.5, WALL) == [ImpossibleClaim("s1", "evil", "before_ours")]
    assert book.owners["s1"].gateway_id == "gw-a" and not book.held_elsewhere("s1", 1.0)
    # A real rival, a moment earlier than us, still wins the race.
    assert book.seen("s1", Claim("gw-b", 99.5), 0.5, WALL) == [DropSession("s1")]


def test_only_our_own_claims_are_renewed_the_earliest_first() -> None:
    book = ClaimBook("gw-a", lease_s=60.0)
    for i in range(50):
        book.claim(f"s{i}", 100.0, now=float(i))  # renewals at 30, 31, ... 79
    book.seen("x1", Claim("gw-b", 99.0), 0.0, WALL)  # another's: it lapses, we never renew it
    for lost in ("s0", "s1"):  # a rival claimed these first (within the clock skew)
        assert book.seen(lost, Claim("gw-b", 95.0), 5.0, WALL) == [DropSession(lost)]
    assert book.next_deadline() == 32.0
    renewed = book.handle_timer(40.0)
    assert [a.session_id for a in renewed if isinstance(a, PublishClaim)] == [f"s{i}" for i in range(2, 11)]
    assert book.next_deadline() == 41.0
