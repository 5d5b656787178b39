"""The HTTP layer: the server loop, the WSGI bridge, the cached-page lane, routing and request bodies."""
