"""mnist-automl-pipeline: BigQuery → TFX (AdaNet) → versioned registry → serverless serving."""

import warnings

__version__ = "0.1.0"

# google-api-core warns on every import that Python 3.10 is past its support window; the TFX 1.15
# stack pins us to 3.10 (STACK.md), so the warning says nothing actionable.
warnings.filterwarnings(
    "ignore", message="You are using a non-supported Python version", category=FutureWarning
)
