"""The fair-share core (stream_server/core/admission.py): table-driven, no I/O, time passed in."""

from __future__ import annotations

import pytest

from stream_server.core.admission import Admission, AdmissionLimits, Admitted, DetachPlan, NoRoom


def core(**kw: float) -> Admission:
    base = {"max_sessions": 4, "max_detached": 2, "client_sessions": 3, "client_in_flight": 2}
    base["retry_after_s"] = 1.5
    base.update(kw)
    return Admission(AdmissionLimits(**base))  # type: ignore[arg-type]


def test_a_flood_of_dropped_sessions_never_refuses_an_attached_one() -> None:
    a = core(max_sessions=3, max_detached=3, client_sessions=100)
    for i in range(3):
        assert a.open(f"s{i}", "attacker", float(i)) == Admitted()
        a.detach(f"s{i}", 10.0 + i)
    assert a.detached_count() == 3 and a.attached_count() == 0
    # A new client finds room at once: the oldest detached session makes it.
    assert a.open("polite", "polite", 20.0) == Admitted(evict=("s0",))
    assert a.open("polite2", "polite", 21.0) == Admitted(evict=("s1",))
    assert a.attached_count() == 2 and a.detached_count() == 1


def test_the_detached_cap_closes_the_oldest_detached() -> None:
    a = core(max_sessions=10, client_sessions=10, max_detached=2)
    for i in range(3):
        a.open(f"s{i}", "c", 0.0)
    assert a.detach("s0", 1.0).evict == ()
    assert a.detach("s1", 2.0).evict == ()
    assert a.detach("s2", 3.0).evict == ("s0",)
    assert not a.is_detached("s0") and a.is_detached("s1") and a.is_detached("s2")


def test_no_detached_pool_closes_the_session_that_drops() -> None:
    a = core(max_detached=0)
    a.open("s", "c", 0.0)
    assert a.detach("s", 1.0).evict == ("s",)
    assert a.detached_count() == 0 and a.sessions_of("c") == 0


@pytest.mark.parametrize(
    ("opened", "detached", "client", "expect"),
    [
        # (sessions the client has, of which detached, who opens, admitted / evicted / refused)
        (3, 0, "c", NoRoom("this client has 3 sessions open (the quota is 3)", 1.5)),
        (3, 1, "c", Admitted(evict=("c0",))),  # its own oldest detached makes room
        (3, 0, "other", Admitted()),  # another client is not held back by c's quota
        (2, 0, "c", Admitted()),
    ],
)
def test_client_session_quota(opened: int, detached: int, client: str, expect: Admitted | NoRoom) -> None:
    a = core(max_sessions=10)
    for i in range(opened):
        a.open(f"c{i}", "c", float(i))
    for i in range(detached):
        a.detach(f"c{i}", 5.0)
    assert a.open("new", client, 9.0) == expect


def test_a_full_gateway_refuses_with_retry_after() -> None:
    a = core(max_sessions=2, client_sessions=5)
    a.open("a", "x", 0.0)
    a.open("b", "y", 0.0)
    refused = a.open("c", "z", 0.0)
    assert isinstance(refused, NoRoom)
    assert refused.code == "overloaded" and refused.retry_after_s == 1.5
    a.close("a")
    assert a.open("c", "z", 1.0) == Admitted()


def test_sentences_beyond_the_client_share_wait_and_go_round_robin() -> None:
    a = core(client_in_flight=2, client_sessions=5, max_sessions=5)
    a.open("s1", "greedy", 0.0)
    a.open("s2", "greedy", 0.0)
    a.open("p", "polite", 0.0)
    assert [a.dispatch("s1", q) for q in range(3)] == [True, True, False]
    assert [a.dispatch("s2", q) for q in range(2)] == [False, False]
    # Another client's share is its own.
    assert a.dispatch("p", 0) is True
    assert a.in_flight("greedy") == 2
    # As greedy sentences end, the session with fewer in flight goes first: s2 is not starved.
    assert a.finished("s1", 0) == [("s2", 0)]
    assert a.finished("s1", 1) == [("s1", 2)]
    assert a.finished("s2", 0) == [("s2", 1)]


def test_release_alternates_between_a_clients_sessions() -> None:
    a = core(client_in_flight=1, client_sessions=5, max_sessions=5)
    a.open("s1", "c", 0.0)
    a.open("s2", "c", 0.0)
    assert a.dispatch("s1", 0)
    assert not a.dispatch("s1", 1)
    assert not a.dispatch("s2", 0)
    assert a.close("s1") == [("s2", 0)]  # its held sentence goes with it; s2's may go
    assert a.in_flight("c") == 1


def test_a_detached_session_makes_no_new_audio_beyond_the_sentence_in_flight() -> None:
    a = core(client_in_flight=5, max_sessions=5)
    a.open("s", "c", 0.0)
    for q in range(3):
        assert a.dispatch("s", q)
    plan = a.detach("s", 1.0, speaking={0, 2})  # audio is being made for 0 (and 2, not playing)
    assert plan == DetachPlan(evict=(), pull_back=(1, 2))
    assert a.in_flight("c") == 1
    assert a.dispatch("s", 3) is False  # held while detached
    assert a.finished("s", 0) == []  # nothing goes while detached
    admitted, released = a.attach("s")
    assert admitted and released == [("s", 1), ("s", 2), ("s", 3)]


def test_a_resume_into_a_full_gateway_is_refused() -> None:
    a = core(max_sessions=2, max_detached=2, client_sessions=5)
    a.open("old", "c", 0.0)
    a.detach("old", 1.0)
    a.open("x", "c", 2.0)
    a.open("y", "d", 2.0)  # total would be 3 > 2: the detached one made room
    assert a.attach("old") == (False, [])
    a.close("x")
    a.open("z", "c", 3.0)
    a.detach("z", 4.0)
    assert a.attach("z")[0] is True


def test_barge_in_gives_the_share_back() -> None:
    a = core(client_in_flight=1, client_sessions=5, max_sessions=5)
    a.open("s1", "c", 0.0)
    a.open("s2", "c", 0.0)
    a.dispatch("s1", 0)
    a.dispatch("s2", 0)
    assert a.cancelled("s1") == [("s2", 0)]


def test_sentences_of_sessions_not_admitted_here_are_not_held() -> None:
    a = core(client_in_flight=1)
    assert all(a.dispatch("preload", q) for q in range(5))
    assert a.finished("preload", 0) == []


def test_a_detached_session_with_no_audio_being_made_keeps_nothing_in_flight() -> None:
    a = core(client_in_flight=5, max_sessions=5)
    a.open("s", "c", 0.0)
    for q in range(3):
        a.dispatch("s", q)
    assert a.detach("s", 1.0).pull_back == (0, 1, 2)
    assert a.in_flight("c") == 0
    assert a.attach("s") == (True, [("s", 0), ("s", 1), ("s", 2)])
