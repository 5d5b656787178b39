"""SingleFlight.do: a burst of callers for one key runs the work once, in the first caller's thread."""
import threading
import time

import pytest
from devpi.server.mirror.singleflight import SingleFlight


def test_concurrent_callers_share_one_call_and_its_result():
    flight = SingleFlight("t")
    calls = []
    started = threading.Event()

    def work():
        calls.append(threading.current_thread().name)
        started.set()
        time.sleep(0.2)  # long enough for every other caller to arrive and wait
        return object()

    results = [None] * 8

    def caller(i):
        results[i] = flight.do("page", work)

    threads = [threading.Thread(target=caller, args=(i,), name=f"caller{i}") for i in range(8)]
    threads[0].start()
    started.wait(5)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(5)
    assert calls == ["caller0"]
    assert all(r is results[0] for r in results)
    assert not flight.running("page")
    flight.do("page", work)  # a later call runs again
    assert len(calls) == 2


def test_errors_reach_every_waiter_and_do_not_stick():
    flight = SingleFlight("t")
    with pytest.raises(LookupError):
        flight.do("k", lambda: (_ for _ in ()).throw(LookupError("gone")))
    assert flight.do("k", lambda: 42) == 42
