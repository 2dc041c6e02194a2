"""Registry tests use the session's contract SavedModels."""

from tests.contract_models import fake_models  # noqa: F401  (a fixture)
