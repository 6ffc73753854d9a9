"""``livepilot check``: is a data file sound? SQLite's integrity check and the schema.

The file is opened read-write without creating it (a missing file is not a
sound one) and without changing its journal mode; the caller holds the data
path's lock (:func:`server.startup.lock_data_path`), so no server writes while
the check reads the whole file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import quote

from server.log.schema import SCHEMA_VERSION, schema_version

__all__ = ["MAX_PROBLEMS", "CheckReport", "check_data_file"]

MAX_PROBLEMS: Final = 20
"""Problems reported at most (``integrity_check`` can list thousands)."""


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check_data_file`: sound when ``problems`` is empty."""

    path: str
    schema: int | None = None
    """``PRAGMA user_version``: the last migration applied (None: unreadable)."""
    pages: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the file passed every check."""
        return not self.problems

    def summary(self) -> str:
        """One line: the path and the verdict."""
        if not self.ok:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"{self.path}: NOT OK: {self.problems[0]}{more}"
        pending = (
            f"; schema {SCHEMA_VERSION} is applied at the next start"
            if self.schema is not None and self.schema < SCHEMA_VERSION
            else ""
        )
        return f"{self.path}: ok (schema {self.schema}, {self.pages} pages{pending})"


def check_data_file(path: str | os.PathLike[str]) -> CheckReport:
    """Run ``PRAGMA integrity_check`` on an existing data file and read its schema.

    Raises ``FileNotFoundError`` if there is no such file; any other problem,
    including "not a database", is reported in the :class:`CheckReport`.
    """
    name = os.fspath(path)
    if not Path(name).is_file():
        raise FileNotFoundError(name)
    uri = f"file:{quote(os.path.abspath(name))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as e:
        return CheckReport(path=name, problems=[str(e)])
    with contextlib.closing(conn):
        try:
            schema = schema_version(conn)
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            rows = conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})").fetchall()
        except sqlite3.Error as e:  # e.g. "file is not a database", "malformed"
            return CheckReport(path=name, problems=[str(e)])
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if schema > SCHEMA_VERSION:
        problems.append(f"schema {schema} is newer than this build's {SCHEMA_VERSION}")
    return CheckReport(path=name, schema=schema, pages=pages, problems=problems)
