"""The SQL store: the only package that imports SQLAlchemy."""

from core.store.engine import DatabaseUnreachable, SchemaBehind, Store

__all__ = ["Store", "SchemaBehind", "DatabaseUnreachable"]
