"""Claim-only opening (a broker without shared subscriptions): every gateway bids for an ``open``,
the claim race picks one, and only that one opens, with what the publisher sent meanwhile."""

from __future__ import annotations

import itertools

import pytest

from stream_server.core.claims import ClaimBook, PublishClaim
from stream_server.core.open_bids import OpenBids


def test_a_bid_holds_input_in_order_until_its_window_closes() -> None:
    bids = OpenBids(window_s=0.5)
    assert bids.next_deadline() is None
    assert bids.bid("s1", b"{}", now=10.0)
    assert not bids.bid("s1", b"{}", now=10.1)  # the open again: one bid
    assert bids.hold("s1", "text", b"a") and bids.hold("s1", "flush", b"")
    assert not bids.hold("s2", "text", b"x")  # no bid: the caller handles it
    assert bids.next_deadline() == 10.5
    assert bids.handle_timer(10.4) == []
    [bid] = bids.handle_timer(10.5)
    assert (bid.session_id, bid.open_payload, bid.held) == ("s1", b"{}", [("text", b"a"), ("flush", b"")])
    assert not bids.pending("s1") and bids.next_deadline() is None


def test_a_flood_before_the_window_closes_keeps_the_newest_and_counts_the_rest() -> None:
    bids = OpenBids(window_s=0.5, max_held=3)
    bids.bid("s1", b"", now=0.0)
    for i in range(5):
        bids.hold("s1", "text", str(i).encode())
    [bid] = bids.handle_timer(1.0)
    assert [p for _, p in bid.held] == [b"2", b"3", b"4"] and bid.dropped == 2


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_three_gateways_bid_and_exactly_one_opens_in_any_order(order: tuple[int, ...]) -> None:
    """Each gateway sees the open, claims (its wall clock differs), then sees every claim in some
    order before its window closes: exactly the smallest claim opens, on every gateway's word."""
    gateways = ["gw-a", "gw-b", "gw-c"]
    walls = {"gw-a": 100.3, "gw-b": 100.1, "gw-c": 100.2}
    books = {g: ClaimBook(g) for g in gateways}
    bids = {g: OpenBids(window_s=0.5) for g in gateways}
    published = []
    for g in gateways:
        assert bids[g].bid("s1", b"", now=0.0)
        [claim] = books[g].claim("s1", walls[g], now=0.0)
        assert isinstance(claim, PublishClaim)
        published.append(claim.claim)
    for g in gateways:
        for i in order:
            books[g].seen("s1", published[i], 0.2, walls[g] + 0.2)
    opened = []
    for g in gateways:
        for bid in bids[g].handle_timer(0.5):
            owner = books[g].owners.get(bid.session_id)
            if owner is not None and owner.gateway_id == g:
                opened.append(g)
    assert opened == ["gw-b"]
