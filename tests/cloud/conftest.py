"""Cloud tests use the session's contract SavedModels for the function bundle."""

from tests.contract_models import fake_models  # noqa: F401  (a fixture)
