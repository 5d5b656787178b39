"""Alembic migrations: every schema change, so an older server dir upgrades in place."""
