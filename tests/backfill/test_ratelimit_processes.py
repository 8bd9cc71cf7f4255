"""The Cora limiter shared between processes through a file in the cache directory."""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from recocora import CoraClient
from recocora._ratelimit import MAX_DEFER, SpacingLimiter, limiter_for, slot_file_for

from .conftest import Child, bulk_posts

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox


class FakeTime:
    """A wall clock that only moves when someone sleeps."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_limiters_on_one_file_book_from_one_schedule(tmp_path: Path) -> None:
    t = FakeTime()
    slot = tmp_path / "k.slot"
    a = SpacingLimiter(20.0, clock=t.clock, sleep=t.sleep, shared=slot)
    b = SpacingLimiter(20.0, clock=t.clock, sleep=t.sleep, shared=slot)
    m = a.margin()
    assert m == pytest.approx(SpacingLimiter.ROOM)  # an absolute room, not a share of 20 s
    cold = 20.0 + m + 0.25  # a limiter's first request opens a connection: more room after it
    foreign = 20.0 * 0.005 + 0.005  # and a slot another process booked gets more room too
    assert a.acquire() == 0.0
    assert b.wait_time() == pytest.approx(cold + foreign)  # first contact: b adds the room
    assert b.acquire() == pytest.approx(cold + foreign)  # b waited for a's booking
    # b now knows it shares the key: its booking carries the room; a, at its first contact,
    # adds it once more.
    assert a.wait_time() == pytest.approx(cold + 2 * foreign)
    assert a.acquire() == pytest.approx(cold + 2 * foreign)
    # From here both book with the room and both wait for the same slot: neither can take
    # every slot from the other.
    assert b.wait_time() == pytest.approx(20.0 + m + foreign)
    assert a.wait_time() == pytest.approx(b.wait_time())
    b.acquire()
    assert a.wait_time() == pytest.approx(b.wait_time()) == pytest.approx(20.0 + m + foreign)
    b.defer(45.0)
    assert a.wait_time() == pytest.approx(45.0) == b.wait_time()
    # A minute without the other's bookings and a limiter books as if alone again.
    t.now += 120.0
    a.acquire()
    assert a.wait_time() == pytest.approx(20.0 + m)


def test_a_released_slot_is_free_again_unless_booked_since(tmp_path: Path) -> None:
    # A request that never reached the server (connection refused) gives its slot back.
    t = FakeTime()
    slot = tmp_path / "k.slot"
    a = SpacingLimiter(20.0, clock=t.clock, sleep=t.sleep, shared=slot)
    b = SpacingLimiter(20.0, clock=t.clock, sleep=t.sleep, shared=slot)
    a.acquire()
    a.release()
    assert a.wait_time() == b.wait_time() == 0.0
    assert a.acquire() == 0.0
    b.acquire()  # waits for a's slot, then books the next one
    booked = b.wait_time()
    a.release()  # too late: b booked after a; b's slot stays
    assert booked > 20.0
    assert b.wait_time() == booked
    assert a.wait_time() >= booked  # (plus the room a leaves around another's slot)


def test_a_limiter_alone_books_warm_gaps_of_interval_plus_margin(tmp_path: Path) -> None:
    t = FakeTime()
    lim = SpacingLimiter(0.5, clock=t.clock, sleep=t.sleep, shared=tmp_path / "k.slot")
    lim.acquire()
    waits = [lim.acquire() for _ in range(5)]
    m = 0.5 * SpacingLimiter.ROOM_SHARE  # under a second the room is a share of the window
    assert waits[0] == pytest.approx(0.5 + m + 0.01)  # after the cold first request
    assert waits[1:] == pytest.approx([0.5 + m] * 4)


def test_each_429_widens_the_margin_up_to_a_cap() -> None:
    t = FakeTime()
    lim = SpacingLimiter(20.0, clock=t.clock, sleep=t.sleep)
    base = lim.margin()
    assert base == pytest.approx(SpacingLimiter.ROOM)
    widened = []
    for _ in range(12):
        lim.defer(1.0)
        widened.append(lim.margin() - base)
    assert widened[0] == pytest.approx(SpacingLimiter.ROOM / 2)
    assert widened[1] == pytest.approx(2 * widened[0])
    assert widened == sorted(widened)
    assert widened[-1] == pytest.approx(20.0 * SpacingLimiter.LEARN_CAP_SHARE + 0.02)  # capped
    lim.acquire()
    assert lim.wait_time() == pytest.approx(20.0 + lim.margin() + 0.25)
    assert lim.expected_gap() == pytest.approx(20.0 + lim.margin())
    zero = SpacingLimiter(0.0, clock=t.clock, sleep=t.sleep)
    zero.defer(1.0)
    assert zero.margin() == 0.0  # a limiter without an interval never spaces requests
    assert zero.acquire() == pytest.approx(1.0)  # but still honours a Retry-After
    assert zero.expected_gap() == 0.0


def test_clean_requests_wear_the_learned_room_down_to_the_base_and_no_further() -> None:
    t = FakeTime()
    lim = SpacingLimiter(20.0, clock=t.clock, sleep=t.sleep)
    base = lim.margin()
    lim.defer(1.0)
    lim.defer(1.0)
    widest = lim.margin()
    seen = [widest]
    for _ in range(200):
        lim.settled()
        seen.append(lim.margin())
    assert seen == sorted(seen, reverse=True)  # it only shrinks while nothing is refused
    assert seen[20] > base  # slowly: twenty clean requests later it is still wider
    assert seen[-1] == pytest.approx(base)  # and in the end exactly the base room
    lim.defer(1.0)  # a new 429 widens it again from the start
    assert lim.margin() == pytest.approx(base + SpacingLimiter.ROOM / 2)


def test_a_wait_starts_with_a_full_collection_unless_collection_is_off() -> None:
    t = FakeTime()
    lim = SpacingLimiter(20.0, clock=t.clock, sleep=t.sleep)
    full: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(seen)
    try:
        lim.acquire()  # no wait, nothing collected
        assert full == []
        assert lim.acquire() == pytest.approx(20.0 + lim.margin() + 0.25)
        assert full == [1]  # collected while idle, so no collection is due during the send
        gc.disable()
        try:
            lim.acquire()
        finally:
            gc.enable()
        assert full == [1]  # a program that turned collection off keeps it off
    finally:
        gc.callbacks.remove(seen)


def test_the_file_holds_only_a_time(tmp_path: Path) -> None:
    slot = tmp_path / "k.slot"
    lim = SpacingLimiter(1.0, shared=slot)
    lim.acquire()
    data = slot.read_bytes()
    assert len(data) == 8
    assert abs(struct.unpack("<d", data)[0] - (time.monotonic() + 1.0)) < 1.0  # one clock for all
    assert slot.stat().st_mode & 0o077 == 0


def test_a_zero_interval_never_touches_the_file(tmp_path: Path) -> None:
    slot = tmp_path / "k.slot"
    lim = SpacingLimiter(0.0, shared=slot)
    lim.acquire()
    lim.defer(0.01)
    assert not slot.exists()


def test_a_booking_from_before_a_restart_is_ignored(tmp_path: Path) -> None:
    t = FakeTime()
    slot = tmp_path / "k.slot"
    slot.write_bytes(struct.pack("<d", t.now + 20 + MAX_DEFER + 3600))
    lim = SpacingLimiter(20.0, clock=t.clock, sleep=t.sleep, shared=slot)
    assert lim.acquire() == 0.0


def test_an_unusable_cache_directory_falls_back_to_this_process(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    lim = SpacingLimiter(0.05, shared=blocker / "k.slot")
    assert lim.acquire() == 0.0
    waited = lim.acquire()
    assert waited > 0  # still spaced within the process


def test_limiter_for_uses_a_file_per_key_and_server(cache_dir: Path) -> None:
    a = limiter_for("https://a.example", "k1", 20.0)
    assert a.shared_path == slot_file_for("https://a.example", "k1")
    assert a.shared_path is not None and a.shared_path.parent == cache_dir / "ratelimit"
    assert slot_file_for("https://a.example", "k2") != a.shared_path
    assert slot_file_for("https://b.example", "k1") != a.shared_path
    assert "k1" not in a.shared_path.name


def _book(limiter: SpacingLimiter, out: multiprocessing.Queue[float]) -> None:
    out.put(limiter.wait_time())
    limiter.defer(60.0)


def test_a_forked_child_keeps_sharing_the_schedule(tmp_path: Path) -> None:
    parent = SpacingLimiter(30.0, shared=tmp_path / "k.slot")
    parent.acquire()
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[float] = ctx.Queue()
    # The child inherits the limiter (and its open file): it must open the file anew, or
    # its lock would be the parent's.
    proc = ctx.Process(target=_book, args=(parent, out))
    proc.start()
    proc.join(10)
    assert proc.exitcode == 0
    assert out.get(timeout=5) > 29  # the child saw the parent's booking
    assert parent.wait_time() > 59  # and the parent sees the child's


def _book_many(path: str, name: str, n: int, start: float, out: Any) -> None:
    lim = SpacingLimiter(0.1, shared=path)
    time.sleep(max(0.0, start - time.monotonic()))
    for _ in range(n):
        lim.acquire()
        out.put((time.monotonic(), name))
        time.sleep(0.03)  # the request's round trip


def test_a_busy_process_does_not_keep_every_slot_from_another(tmp_path: Path) -> None:
    # A keeps booking; B starts just after it. Each must learn of the other, or A would
    # find its own slot earlier every time and B would get none until A is done. Once they
    # know, they race for each slot: B losing all of A's 23 is vanishingly rare.
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    start = time.monotonic() + 2.0  # both processes up and importing done
    procs = [ctx.Process(target=_book_many, args=(str(tmp_path / "k.slot"), name, n,
                                                  start + delay, out))
             for name, n, delay in (("A", 24, 0.0), ("B", 6, 0.05))]
    for proc in procs:
        proc.start()
    booked = sorted(out.get(timeout=30) for _ in range(30))
    for proc in procs:
        proc.join(10)
        assert proc.exitcode == 0
    order = "".join(name for _, name in booked)
    assert order.index("B") < order.rindex("A"), order  # B got a slot while A was sending
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(booked)]
    assert min(gaps) > 0.09  # and one schedule still spaced them all (times taken after)


def test_two_processes_on_one_key_draw_no_429(
    sb: Sandbox, child: Callable[..., Child], tmp_path: Path
) -> None:
    window = 1.0  # the limiter's full room (75 ms) between two processes on one machine
    sb.set_cora_window(window)
    go = tmp_path / "go"
    spec = {"api": "cora", "key": sb.cora_key, "url": sb.cora_base_url, "interval": window,
            "rows": 10, "n": 60, "go": str(go)}
    runs = [child(**spec, start=0), child(**spec, start=1000)]
    # Both start sending together, once both have imported and built their frames.
    for run in runs:
        run.wait_for(lambda run=run: Path(f"{go}.ready.{run.spec['start']}").exists())
    go.touch()
    reports = [run.finish() for run in runs]
    for report in reports:
        assert report["returncode"] == 0, report["stderr"]
        assert report["counts"] == {"created": 60}
    posts = bulk_posts(sb)
    # The limiter books each slot window + margin after the last one, whichever process
    # booked it (and more after a process's first, connection-opening request), so no
    # request can arrive inside another's window: no 429 at all.
    assert [p.status for p in posts] == [200] * 12
    # Both ran at once and were spaced as one: the work took eleven windows.
    (a0, a1), (b0, b1) = ((r["began"], r["ended"]) for r in reports)
    assert a0 < b1 and b0 < a1
    assert max(a1, b1) - min(a0, b0) >= 11 * window
    assert len(sb.cora_accounts()) == 120


def test_a_client_in_this_process_waits_for_a_booking_made_elsewhere(
    sb: Sandbox, cora_for: Callable[..., CoraClient], cache_dir: Path
) -> None:
    sb.add_cora_key("cora_org_waiter.s3cret", sb.cora_org)
    client = cora_for(api_key="cora_org_waiter.s3cret", min_interval=5.0)
    assert client.limiter.shared_path == slot_file_for(client.base_url, "waiter")
    other = SpacingLimiter(5.0, shared=client.limiter.shared_path)
    other.acquire()  # as if another process had just sent a request
    assert client.limiter.wait_time() > 4.5
