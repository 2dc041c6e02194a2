"""Exceptions a user can cause; the CLI and HTTP edges turn each into one readable line."""


class MlpipeError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""

    exit_code = 1


class UsageError(MlpipeError):
    """A flag or argument has an invalid value."""

    exit_code = 2


class ServiceUnavailable(MlpipeError):
    """A service the command needs (e.g. the local BigQuery) is not reachable."""


class ServiceStateError(MlpipeError):
    """A service cannot change state as asked (already running, port in use, failed to start)."""


class NotFoundError(MlpipeError):
    """A named dataset, table, model, version or artifact does not exist."""


class EnvironmentSetupError(MlpipeError):
    """Something setup should have installed is missing."""


class DataIntegrityError(MlpipeError):
    """Data read back does not match what was written, or fails validation."""
