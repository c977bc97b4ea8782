"""The error types of canao.

Every error the library raises on purpose derives from :class:`CanaoError`, so a
caller (the CLI, the server) can tell a user mistake from a bug with one
``except``. The message always names the thing that is wrong and what to do.

Example::

    try:
        spec = ArchSpec.from_json(text)
    except CanaoError as err:
        print(err)
"""

from __future__ import annotations


class CanaoError(Exception):
    """Base of every error canao raises on purpose."""


class SpecError(CanaoError, ValueError):
    """An ArchSpec, search space or config field holds an invalid value."""


class CheckpointError(CanaoError, ValueError):
    """A checkpoint directory is missing files or disagrees with its config."""


class MissingDependencyError(CanaoError, ImportError):
    """An optional package (or the bundled teacher) is not installed."""


class DataError(CanaoError, ValueError):
    """A data file is missing or not in its standard format (the message names file and line)."""
