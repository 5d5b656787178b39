"""Operations: what an admin runs against a server dir, beside or instead of the server.

``devpi export|import|fsck|gc|gen-config`` (cli.py dispatches; one module per command, as
twine has one per command). They open the storage the way the server does (offline.py) and
work on the same tables and blob store, so a command and a running server may share a dir
where the command says it can.
"""
