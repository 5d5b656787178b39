"""Replication: a replica follows its primary's serials and serves reads on its own.

The primary keeps, next to each changelog row, the full images of the rows the serial
touched (store/row_journal.py); its feed (``feed.py``) streams them to replicas that know
the shared secret (``secret.py``). A replica applies them one serial per transaction
(``Storage.apply_replicated``) from a follower thread (``follower.py``), fetches the files
they name (``blob_fetch.py``), forwards writes to the primary (``forward.py``) and reports its
lag (``state.py``). Mirror indexes, whose cache takes no serials, have their own way: the
primary serves its cache and fetches for replicas (``mirror_feed.py``), a replica polls
the cache (``mirror_sync.py``), checks every row (``mirror_rows.py``) and asks the primary
for what it lacks (``mirror_source.py``, used by mirror/through_primary.py), never the
upstream. ``role.py`` makes the role from the command line, ``plugin.py`` plugs it
in. doc/replication.md says what this slice does and does not do yet.
"""
