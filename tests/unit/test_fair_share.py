"""The consumer's fair share of the prefetch: how many messages one organization may hold, and
how long its excess waits on the ladder (issue #22)."""

from __future__ import annotations

from worker.messaging.consumer import ORG_FLOOR, PARK_MAX_S, FairShare

LADDER = (10.0, 60.0, 600.0, 3600.0, 21600.0)


def test_one_busy_organization_leaves_slots_for_the_others() -> None:
    shares = FairShare(256, LADDER)
    admitted = sum(shares.admit("busy", 0.0) for _ in range(300))
    # Alone it may use half the prefetch: the other half stays free for whoever comes next.
    assert admitted == 128
    assert shares.admit("quiet", 0.0)
    # A second organization in flight shrinks everyone's share; the busy one is held to it.
    assert shares.share() == 256 // 3
    assert not shares.admit("busy", 0.0)


def test_every_organization_keeps_the_floor_however_many_are_in_flight() -> None:
    shares = FairShare(256, LADDER)
    for n in range(100):
        assert shares.admit(f"org-{n}", 0.0)
    assert shares.share() == ORG_FLOOR
    assert all(shares.admit("org-0", 0.0) for _ in range(ORG_FLOOR - 1))
    assert not shares.admit("org-0", 0.0)


def test_a_prefetch_at_the_floor_never_parks() -> None:
    shares = FairShare(ORG_FLOOR, LADDER)
    assert all(shares.admit("busy", 0.0) for _ in range(ORG_FLOOR))


def test_a_released_slot_can_be_taken_again() -> None:
    shares = FairShare(32, LADDER)
    while shares.admit("busy", 0.0):
        pass
    shares.release("busy", 1.0)
    assert shares.admit("busy", 1.0)


def test_parked_messages_wait_their_turn_at_the_pace_the_organization_is_served() -> None:
    shares = FairShare(32, LADDER)
    while shares.admit("busy", 0.0):
        pass
    # 20 finished in the last 10 s: served at 2 per second.
    for k in range(20):
        shares.release("busy", 0.5 * k)
        assert shares.admit("busy", 0.5 * k)
    waits = [shares.park("busy", 10.0)[0] for _ in range(30)]
    assert waits == sorted(waits)  # later ones come back later, one after the other
    assert waits[0] < 1.0 and 8.0 < waits[-1] < 12.0  # 30 at 2/s, offered 1.5 times faster
    assert shares.park("busy", 10.0)[1] is False  # not the first parked of this busy period


def test_a_long_backlog_waits_at_most_the_cap_and_then_comes_round_again() -> None:
    shares = FairShare(32, LADDER)
    while shares.admit("busy", 0.0):
        pass
    waits = [shares.park("busy", 0.0)[0] for _ in range(20_000)]
    assert max(waits) == PARK_MAX_S
    # Once they are back (their wait is over) the next parked message is first in line again.
    assert shares.park("busy", PARK_MAX_S + 1)[0] < 1.0


def test_an_earlier_quiet_spell_does_not_make_a_flood_wait_longer() -> None:
    shares = FairShare(32, LADDER)
    assert shares.admit("busy", 0.0)
    shares.release("busy", 0.5)  # one event, then nothing for a while
    while shares.admit("busy", 20.0):
        pass
    # Its pace is not known yet in this busy period: the first parked come back within seconds,
    # not one per 20 s.
    waits = [shares.park("busy", 20.0)[0] for _ in range(15)]
    assert max(waits) <= 1.0
