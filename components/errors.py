"""The project's one error hierarchy.

Entry points (the CLI, the torchrun target, KFP component wrappers) turn a
``Sam3Error`` into one clear line on stderr and the exit code it carries.
"""

from __future__ import annotations


class Sam3Error(Exception):
    """Base class: a failure the user can act on, reported as one line."""

    exit_code = 1


class ConfigError(Sam3Error):
    """Bad usage or configuration, detected before any work starts."""

    exit_code = 2


class DataError(Sam3Error):
    """Input data that cannot be used (nothing valid left, strict mode, bad manifest)."""


class WeightsRefused(DataError):
    """A weights file that is refused: unreadable, or not the architecture it is imported as."""

    exit_code = 2


class StorageError(Sam3Error):
    """The object store failed or refused, after bounded retries."""


class ConditionFailed(StorageError):
    """A conditional write was refused (HTTP 412): the object changed, or exists, since it was read."""


class LaunchError(Sam3Error):
    """A training job could not be launched or failed."""
