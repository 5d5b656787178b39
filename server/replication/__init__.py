"""Replication: a replica follows its primary's serials and serves reads on its own.

The primary keeps, next to each changelog row, the full images of the rows the serial
touched (store/row_journal.py); its feed (``feed.py``) streams them to replicas that know
the shared secret (``secret.py``). A replica applies them one serial per transaction
(``Storage.apply_replicated``) from a follower thread (``follower.py``), fetches the files
they name (``blob_fetch.py``), forwards writes to the primary (``forward.py``) and reports its lag
(``state.py``). ``role.py`` makes the role from the command line, ``plugin.py`` plugs it
in. doc/replication.md says what this slice does and does not do yet.
"""
