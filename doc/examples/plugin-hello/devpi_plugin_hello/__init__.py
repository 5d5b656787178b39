"""An example plugin for devpi-server (see doc/plugins.md)."""
