"""The on-demand mirror of an upstream index: client, page reading, fetch, cache, policy, health."""
