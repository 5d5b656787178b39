"""The mirror's memory of an unwell upstream: which state, and for how long."""
from __future__ import annotations

from devpi.server.mirror.upstream_health import UpstreamHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_slow_then_answered():
    clock = Clock()
    health = UpstreamHealth(30.0, clock)
    assert health.unwell() is None
    health.slow()
    assert health.unwell() == "slow"
    health.answered()
    assert health.unwell() is None


def test_a_failure_holds_for_the_backoff_then_upstream_is_asked_again():
    clock = Clock()
    health = UpstreamHealth(30.0, clock)
    health.failed()
    clock.now += 29.9
    assert health.unwell() == "down"
    clock.now += 0.2
    assert health.unwell() is None


def test_a_slow_request_does_not_hide_a_failure():
    clock = Clock()
    health = UpstreamHealth(30.0, clock)
    health.failed()
    health.slow()
    assert health.unwell() == "down"
    health.answered()
    health.slow()
    clock.now += 31
    assert health.unwell() is None  # a fetch that never ends does not keep upstream unasked
