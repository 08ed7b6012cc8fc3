"""PostgreSQL bulk inserts through COPY, in the unit of work's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection


def copy_insert(conn: Connection, table: str, columns: dict[str, str],
                rows: Sequence[dict[str, Any]], constants: dict[str, Any],
                conflict: str) -> None:
    """PostgreSQL bulk insert, in the unit of work's transaction: the rows as one COPY
    straight into ``table`` (under a savepoint). Should a row hit a unique key (it was
    written already: a race the run claim makes rare), the savepoint is rolled back and
    the same data goes through a session-private staging table and one ``INSERT ...
    SELECT ... ON CONFLICT DO NOTHING``. Instants are stored naive UTC, as UTCDateTime
    does."""
    from psycopg import errors

    names = list(columns)
    data = _copy_text(names, rows, constants)
    copy_sql = f"COPY {{}} ({', '.join(names)}) FROM STDIN"
    if not conn.in_transaction():
        conn.begin()  # so the unit of work's commit() covers the driver-level COPY
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute("SAVEPOINT loyalty_bulk")
        try:
            with cur.copy(copy_sql.format(table)) as copy:
                copy.write(data)
        except errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT loyalty_bulk")
        else:
            cur.execute("RELEASE SAVEPOINT loyalty_bulk")
            return
        cur.execute("RELEASE SAVEPOINT loyalty_bulk")
        stage = f"loyalty_stage_{table}"
        cur.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ("
                    + ", ".join(f"{n} {k}" for n, k in columns.items())
                    + ") ON COMMIT DELETE ROWS")
        cur.execute(f"TRUNCATE {stage}")
        with cur.copy(copy_sql.format(stage)) as copy:
            copy.write(data)
        cur.execute(f"INSERT INTO {table} ({', '.join(names)}) "
                    f"SELECT {', '.join(names)} FROM {stage} {conflict}")


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(names: Sequence[str], rows: Sequence[dict[str, Any]],
               constants: dict[str, Any]) -> str:
    """Rows in COPY's text format (tab-separated, backslash escapes, \\N for NULL). Constant
    columns are formatted once; instants once per distinct value."""
    cache: dict[Any, str] = {}

    def field(value: Any) -> str:
        if isinstance(value, str):
            return value.translate(_COPY_ESCAPES)
        if value is None:
            return "\\N"
        if isinstance(value, bool):
            return "t" if value else "f"
        if isinstance(value, datetime):
            text_ = cache.get(value)
            if text_ is None:
                text_ = cache[value] = _naive_utc(value).isoformat(sep=" ")
            return text_
        return str(value)

    variable = [n for n in names if n not in constants]
    tail = "".join("\t" + field(constants[n]) for n in names if n in constants)
    if any(n in constants for n in names[:len(variable)]):  # constants must come last
        raise ValueError("constant columns go after the per-row columns")
    lines = ["\t".join([field(row[n]) for n in variable]) + tail for row in rows]
    lines.append("")
    return "\n".join(lines)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)
