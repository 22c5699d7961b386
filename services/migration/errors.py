"""The two ways a migration stops before its first row: a bad config, or a file it cannot read.

Everything that is wrong with a single row is a `Reject` instead, and the run goes on.
"""

from __future__ import annotations


class ConfigError(Exception):
    """The config or its mapping is wrong; `problems` lists each one, field by field."""

    def __init__(self, where: str, problems: list[str]):
        super().__init__(f"{where}:\n" + "\n".join(f"  - {p}" for p in problems))
        self.where = where
        self.problems = problems


class SourceError(Exception):
    """The export cannot be read at all: missing file, unknown format, absent columns or sheet."""
