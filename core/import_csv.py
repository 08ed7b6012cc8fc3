"""Reading the CSV files of the imports: encodings, rows with line numbers, problems found.

Ops staff save CSV from Excel: UTF-8 (with or without a byte order mark) or, from a Chinese
Excel, GB18030 (a superset of GBK and GB2312). Without ``encoding`` a file is read as UTF-8
when it decodes as UTF-8, else as GB18030; a file that is neither is refused with the line of
the first byte that does not fit.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

from core.config_values import POINTS_CEILING
from core.domain import InvalidInput

MAX_ERRORS = 20  # problems listed; the count is always the true one
REQUIRED = {
    "members": ("msisdn", "name", "language"),
    "points": ("msisdn", "points", "source", "earned_on", "reference"),
    "rewards": ("code", "name_zh", "name_en", "kind", "points", "stock"),
    "deliveries": ("order_no", "status", "courier", "tracking_no"),
    "line-status": ("msisdn", "status"),
    "fulfilments": ("order_no", "result"),
}
SAVE_AS = "save it from Excel as 'CSV UTF-8', or name its encoding with --encoding NAME"


class ImportFailed(Exception):
    """The file was rejected; ``errors`` are (line number, message) pairs, ``count`` how many
    problems were found in all (``errors`` may be capped)."""

    def __init__(self, path: str, errors: list[tuple[int, str]], count: int | None = None) -> None:
        self.errors = errors
        self.count = len(errors) if count is None else count
        lines = "\n".join(f"  line {line}: {message}" for line, message in errors)
        more = (f"\n  ... and {self.count - len(errors)} more (the first {len(errors)} shown)"
                if self.count > len(errors) else "")
        super().__init__(f"{path}: nothing imported, {self.count} problem(s):\n{lines}{more}")


class FileUnreadable(InvalidInput):
    """The path cannot be read as a file at all: one line saying what to do."""


def read_text(path: str | Path, encoding: str | None = None) -> str:
    """The file's text, decoded as asked or as detected (module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise FileUnreadable(f"{path} is a directory: give the CSV file itself, "
                             f"e.g. {path / 'members.csv'}") from None
    except FileNotFoundError:
        raise FileUnreadable(f"{path}: no such file (check the name; a relative path is taken "
                             "from the current directory)") from None
    except PermissionError:
        raise FileUnreadable(f"{path}: not allowed to read it (check its permissions)") from None
    if encoding:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise FileUnreadable(f"unknown encoding {encoding!r} (e.g. utf-8, gb18030)") from None
        return _decode(path, data, "utf-8-sig" if name == "utf-8" else name, encoding)
    if b"\x00" in data:
        raise ImportFailed(str(path), [(1, f"the file looks like UTF-16 ('Unicode text'); "
                                        f"{SAVE_AS}")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    return _decode(path, data, "gb18030", "UTF-8 nor GB18030")


def _decode(path: Path, data: bytes, codec: str, told: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as bad:
        line = data[:bad.start].count(b"\n") + 1
        what = (f"the file is neither {told}" if told.endswith("GB18030")
                else f"the file is not {told}")
        raise ImportFailed(str(path), [(line, f"{what} (byte 0x{data[bad.start]:02x}); "
                                        f"{SAVE_AS}")]) from None


class Rows:
    """Rows of one CSV file with their line numbers, and the problems found in them."""

    def __init__(self, kind: str, path: str | Path, encoding: str | None = None) -> None:
        self.path = str(path)
        reader = csv.DictReader(io.StringIO(read_text(path, encoding), newline=""))
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED[kind] if c not in header]
        if missing:
            raise ImportFailed(self.path, [(1, f"header lacks column(s): {', '.join(missing)}")])
        reader.fieldnames = header
        self.rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k})
                     for row in reader]
        self.errors: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def error(self, line: int, message: str) -> None:
        self.errors.append((line, message))

    def raise_if_bad(self) -> None:
        if self.errors:
            raise ImportFailed(self.path, sorted(self.errors)[:MAX_ERRORS], len(self.errors))


def parse_int(value: str, what: str, *, minimum: int | None = None,
              maximum: int = POINTS_CEILING, limit_name: str = "") -> int:
    """A whole number within [minimum, maximum]; every number must fit its column."""
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a whole number") from None
    if minimum is not None and number < minimum:
        raise InvalidInput(f"{what} must be at least {minimum}")
    if abs(number) > maximum:
        because = f" ({limit_name})" if limit_name else ""
        raise InvalidInput(f"{what} {value} is beyond the largest allowed, {maximum}{because}")
    return number


def parse_date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None


def optional(row: dict[str, str], key: str, parse: Callable[[str], object]):
    value = row.get(key, "")
    return parse(value) if value else None
