"""A client plugin that cannot be imported (its dependency is missing)."""
import devpi_no_such_dependency  # noqa: F401
