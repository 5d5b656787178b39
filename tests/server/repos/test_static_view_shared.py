"""Several processes sharing one static dir (repos/static_view.py), made deterministic.

Each ``StaticView`` here stands for one process: its own descriptor of the lock file, so
``fcntl.flock`` sets them against each other exactly as it sets two processes. The
real-process side (``--workers 2`` behind nginx) is tests/ops/test_static_view_workers.py.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from devpi.server.repos.static_view import StaticView, Ticket

UUID = "0123abcd"


def process(tmp_path: Path, serial: int) -> StaticView:
    """One more process opening the shared DIR at start, the database at ``serial``."""
    view = StaticView(tmp_path / "static")
    view.claim(tmp_path / "srv")
    view.start(UUID, lambda: serial)
    return view


def page(tmp_path: Path, project: str = "pkg") -> Path:
    return tmp_path / "static" / "root" / "dev" / "+simple" / project / "index.json"


def test_a_process_behind_a_commit_cannot_land_what_it_read_before(tmp_path):
    a, b = process(tmp_path, 5), process(tmp_path, 5)
    ticket_b = Ticket(b.generation, 5)  # b starts a render; it has absorbed serial 5
    assert a.put_page("root", "dev", "pkg", "json", b"old", Ticket(a.generation, 5))
    with a.commit(6) as due:  # a commits 6 (a new release of pkg) and removes the page
        assert due is True
        a.drop_project("pkg")
    assert not page(tmp_path).exists()
    # b's render read before 6 (its generation is unchanged: only a took 6 in so far)
    assert b.generation == ticket_b.generation
    assert not b.put_page("root", "dev", "pkg", "json", b"old", ticket_b)
    assert not page(tmp_path).exists()
    # a render b starts before its poller brings 6 is refused too
    assert not b.put_page("root", "dev", "pkg", "json", b"old", Ticket(b.generation, 5))
    # a renders after its commit: the fresh page lands
    assert a.put_page("root", "dev", "pkg", "json", b"new", Ticket(a.generation, 6))
    with b.commit(6) as due:  # b's poller brings 6: a removed it already, a's fresh page stays
        assert due is False
    assert page(tmp_path).read_bytes() == b"new"
    assert b.put_page("root", "dev", "pkg", "json", b"newer", Ticket(b.generation, 6))
    assert page(tmp_path).read_bytes() == b"newer"


def test_each_commit_is_removed_by_whoever_handles_it_first(tmp_path):
    a, b = process(tmp_path, 5), process(tmp_path, 5)
    assert a.put_page("root", "dev", "pkg", "json", b"old", Ticket(a.generation, 5))
    with b.commit(6) as due:  # b's poller brings a's commit before a's own thread handles it
        assert due is True
        b.drop_project("pkg")
    assert not page(tmp_path).exists()
    with a.commit(6) as due:
        assert due is False


def test_a_put_waits_for_a_commit_in_progress_and_is_then_refused(tmp_path):
    """The removal and the record of its serial are one flock section: a put from another
    process cannot slip in between (after the removal, before the record)."""
    a, b = process(tmp_path, 5), process(tmp_path, 5)
    assert b.put_page("root", "dev", "pkg", "json", b"old", Ticket(b.generation, 5))
    results: list[bool] = []
    put = threading.Thread(target=lambda: results.append(
        b.put_page("root", "dev", "pkg", "json", b"old", Ticket(b.generation, 5))))
    with a.commit(6):
        a.drop_project("pkg")
        put.start()  # its flock waits for this block's end
        put.join(0.2)  # (only to let it reach the lock; the outcome does not depend on it)
        assert not page(tmp_path).exists()
    put.join(30)
    assert results == [False]
    assert not page(tmp_path).exists()


def test_an_own_commit_refuses_a_render_of_this_process_too(tmp_path):
    a = process(tmp_path, 5)
    ticket = Ticket(a.generation, 5)
    with a.commit(6):
        pass
    assert not a.put_page("root", "dev", "pkg", "json", b"old", ticket)


def test_a_process_starting_keeps_dir_when_every_commit_was_removed(tmp_path):
    a = process(tmp_path, 5)
    assert a.put_page("root", "dev", "pkg", "json", b"x", Ticket(a.generation, 5))
    with a.commit(6):
        pass
    restarted = StaticView(tmp_path / "static")
    restarted.claim(tmp_path / "srv")
    assert restarted.start(UUID, lambda: 6)
    assert page(tmp_path).read_bytes() == b"x"


@pytest.mark.parametrize("uuid, serial", [
    (UUID, 7),  # a commit whose removal a crash cut off (recorded 6, the database at 7)
    (UUID, 4),  # the database restored to an older serial
    ("another", 6),  # another database
])
def test_a_state_that_does_not_match_the_database_empties_dir(tmp_path, uuid, serial):
    a = process(tmp_path, 5)
    assert a.put_page("root", "dev", "pkg", "json", b"x", Ticket(a.generation, 5))
    with a.commit(6):
        pass
    restarted = StaticView(tmp_path / "static")
    restarted.claim(tmp_path / "srv")
    assert not restarted.start(uuid, lambda: serial)
    assert not page(tmp_path).exists()
    assert (tmp_path / "static" / ".devpi-static-view").exists()


def test_a_missing_or_garbled_state_empties_dir(tmp_path):
    a = process(tmp_path, 5)
    assert a.put_page("root", "dev", "pkg", "json", b"x", Ticket(a.generation, 5))
    (tmp_path / "static" / ".devpi-static-state" / "state").write_text("{not json")
    restarted = StaticView(tmp_path / "static")
    restarted.claim(tmp_path / "srv")
    assert not restarted.start(UUID, lambda: 5)
    assert not page(tmp_path).exists()


def test_behind_says_when_a_render_must_not_be_kept_anywhere(tmp_path):
    """A render refused for DIR because another process recorded a commit this one had not
    taken in must not be kept in this process's page cache either (api/simple.py asks
    ``behind``): nginx would pass every request for it to this process, which would answer
    from its cache and never fill DIR."""
    a, b = process(tmp_path, 5), process(tmp_path, 5)
    ticket_b = Ticket(b.generation, 5)
    assert not b.behind(ticket_b)
    with a.commit(6) as due:
        assert due
    assert b.behind(ticket_b) and b.behind(Ticket(b.generation, 5))
    assert not b.put_page("root", "dev", "pkg", "json", b"x" * 2000, ticket_b)
    assert not page(tmp_path).exists() and not page(tmp_path).with_name("index.json.gz").exists()
    with b.commit(6) as due:  # b's poller brings 6
        assert not due
    fresh = Ticket(b.generation, 6)
    assert not b.behind(fresh)
    assert b.put_page("root", "dev", "pkg", "json", b"x" * 2000, fresh)
    assert page(tmp_path).with_name("index.json.gz").is_file()
    with b.commit(7) as due:  # b's own commit: what b rendered before it is behind too
        assert due
    assert b.behind(fresh)
