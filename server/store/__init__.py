"""Durable state: the SQL schema and catalog, storage and migrations, the content-addressed blob store."""
