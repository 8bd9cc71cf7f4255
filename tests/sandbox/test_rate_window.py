"""The sandbox's Cora rate window in each of the forms a real gateway may take: where it
stamps a request, its jitter, whether a refusal restarts it, how it writes Retry-After."""

from __future__ import annotations

import email.utils
import time

import pytest

from recocora.sandbox import RateWindow, Sandbox

from .test_cora_http import error_of, new_row


def test_a_refusal_restarts_the_window_only_when_asked(sb: Sandbox, cora) -> None:  # type: ignore[no-untyped-def]
    for restart, expected in ((False, 200), (True, 429)):
        sb.set_cora_window(RateWindow(1.0, restart_on_refusal=restart))
        cora.upsert_ok([new_row("a")])
        time.sleep(0.6)
        assert cora.upsert([new_row("b")]).status_code == 429  # 0.6 s in: refused
        time.sleep(0.6)
        # 1.2 s after the accepted one, 0.6 s after the refused one.
        assert cora.upsert([new_row("b")]).status_code == expected, restart
        time.sleep(1.1)


@pytest.mark.parametrize("style", ["seconds", "date", "none", "stale"])
def test_retry_after_comes_in_each_form(sb: Sandbox, cora, style: str) -> None:  # type: ignore[no-untyped-def]
    sb.set_cora_window(RateWindow(20.0, retry_after=style))  # type: ignore[arg-type]
    cora.upsert_ok([new_row("a")])
    resp = cora.upsert([new_row("b")])
    assert error_of(resp) == (429, "RATE_LIMITED")
    header = resp.headers.get("Retry-After")
    if style == "none":
        assert header is None
    elif style == "date":
        assert header is not None
        when = email.utils.parsedate_to_datetime(header).timestamp()
        assert 15 <= when - time.time() <= 21
    else:
        assert header is not None
        seconds = int(header)
        assert (19 if style == "stale" else 20) >= seconds >= (14 if style == "stale" else 15)


@pytest.mark.parametrize("stamp", ["arrival", "body", "processed"])
def test_every_stamping_point_enforces_the_window(sb: Sandbox, cora, stamp: str) -> None:  # type: ignore[no-untyped-def]
    sb.set_cora_window(RateWindow(20.0, stamp=stamp))  # type: ignore[arg-type]
    assert sb.cora_rate.stamp == stamp
    cora.upsert_ok([new_row("a")])
    assert error_of(cora.upsert([new_row("b")])) == (429, "RATE_LIMITED")
    assert cora.get_account("b").status_code == 404


def test_jitter_moves_the_stamp_later_and_only_later(sb: Sandbox, cora) -> None:  # type: ignore[no-untyped-def]
    # With 0.5 s of jitter on a 0.5 s window, a request 0.55 s after the first one is
    # refused whenever the first stamp drew more jitter than the second, and the refusals
    # come out of the same seed every time.
    outcomes = []
    for _ in range(2):
        sb.set_cora_window(RateWindow(0.5, jitter=0.5, seed=3))
        codes = []
        for i in range(6):
            codes.append(cora.upsert([new_row(f"j{i}")]).status_code)
            time.sleep(0.55)
        time.sleep(1.1)
        outcomes.append(codes)
    assert outcomes[0] == outcomes[1]
    assert 429 in outcomes[0] and 200 in outcomes[0]


def test_the_window_settings_are_validated_and_reset() -> None:
    with pytest.raises(ValueError, match="stamp"):
        RateWindow(1.0, stamp="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_after"):
        RateWindow(1.0, retry_after="soon")  # type: ignore[arg-type]
    with Sandbox(cora_window=RateWindow(2.0, stamp="body")) as sb:
        sb.set_cora_window(5.0)  # seconds only: the stamping point is kept
        assert sb.cora_rate == RateWindow(5.0, stamp="body")
        sb.reset()
        assert sb.cora_rate == RateWindow(2.0, stamp="body")
