"""Live test runs of ``devpi test``: their HTTP API, push gate and store."""
