"""Feature names and shapes shared by preprocessing, training, evaluation and serving."""

IMAGE_KEY = "image"  # raw: 784 INT64 pixels 0..255; transformed: 784 float32 in [0, 1]
LABEL_KEY = "label"  # INT64 class 0..9
KEY_KEY = "key"  # INT64 row key inside its BigQuery table; not a model input
NUM_CLASSES = 10
IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE

# Output keys of the served signature, as AdaNet's multi-class head names them.
PREDICTION_KEYS = ("class_ids", "probabilities", "logits")
SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serving_examples"  # serialized tf.Examples in; used by TFMA
