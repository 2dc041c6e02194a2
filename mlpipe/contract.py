"""The contract between training, the registry, serving and every reader of a model: one owner.

Names and shapes of the data and of the served signature, and the names of the files a trained
model carries, so that the side that writes a file and the side that reads it can never disagree.
No TensorFlow here: the registry, the CLI and the serving edge import this in milliseconds.
"""

from __future__ import annotations

# ---- data: the BigQuery rows and the tf.Examples made from them -------------------------------------
IMAGE_KEY = "image"  # raw: 784 INT64 pixels 0..255 (row-major 28×28); transformed: float32 in [0, 1]
LABEL_KEY = "label"  # INT64 class 0..9
ROW_KEY = "key"  # INT64 row index inside its BigQuery table; not a model input
# INT64 where a training row came from: the frozen MNIST tables or users' labelled feedback. The
# Evaluator slices on it, so a model must not regress on either.
SOURCE_KEY = "source"
SOURCE_MNIST, SOURCE_FEEDBACK = 0, 1
FEEDBACK_TABLE = "feedback"  # DATASET.feedback: feedback_id, time, label, image, … (mlpipe.feedback)
IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
NUM_CLASSES = 10
PIXEL_MAX = 255

# ---- the served SavedModel -----------------------------------------------------------------------
# `serving_default`: `image` float32 [None, 784] raw pixels → the outputs below (what JSON clients and
# the serving function call); `serving_examples`: serialized tf.Examples → the same (what TFMA calls).
SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serving_examples"
EXAMPLES_INPUT = "examples"
# output name → (dtype, last dimension), as AdaNet's multi-class head names them.
OUTPUTS: dict[str, tuple[str, int]] = {
    "class_ids": ("DT_INT64", 1),
    "probabilities": ("DT_FLOAT", NUM_CLASSES),
    "logits": ("DT_FLOAT", NUM_CLASSES),
}
PREDICTION_KEYS = tuple(OUTPUTS)
PROBABILITIES_KEY = "probabilities"

# ---- files a trained model carries ---------------------------------------------------------------
# Inside the SavedModel (so they travel with every copy of it, into the registry and the cloud):
SEARCH_REPORT_DIR = "assets.extra/search"
SEARCH_REPORT_FILE = "search_report.json"
ACCURACY_PLOT_FILE = "accuracy_per_iteration.png"
CONFUSION_PLOT_FILE = "confusion_matrix.png"
# Inside the Trainer's `model_run` directory (read by lineage and the benchmarks):
TRAINING_SUMMARY_FILE = "training_summary.json"
# Inside the AdaNet model_dir: every candidate's eval metrics, one JSON line per evaluation.
CANDIDATE_EVALS_FILE = "search/candidate_evals.jsonl"
