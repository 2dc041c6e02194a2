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


class InvalidNameError(UsageError):
    """A model, version or alias name is not letters, digits and underscores starting with a letter."""


class RegistryConflictError(MlpipeError):
    """A registry change would break an invariant (delete the default or an aliased version)."""


class InvalidModelError(UsageError):
    """A SavedModel does not have the serving signature the registry and the server rely on."""


class BadInstanceError(UsageError):
    """A prediction request body is malformed: JSON, `instances`, shape or pixel values."""


class PayloadTooLargeError(UsageError):
    """A request body is larger than the server accepts."""


class MethodNotAllowedError(UsageError):
    """An HTTP route exists but not for this method."""

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class UnsupportedMediaTypeError(UsageError):
    """A request body is not of the content type the route accepts (e.g. feedback must be JSON)."""


class ModelLoadError(ServiceUnavailable):
    """A registered version could not be loaded by the server (a server-side fault, not the caller's)."""


class PredictionRequestError(UsageError):
    """The prediction server rejected a request; the message is the server's JSON error."""
