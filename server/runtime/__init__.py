"""Process-level tuning: CPU placement, malloc settings, batched logging, bounded caches."""
