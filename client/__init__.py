"""The ``devpi`` command line client.

It talks to a devpi server only over HTTP (never importing ``devpi.server``),
so it works against our server and against the original devpi-server.
"""
