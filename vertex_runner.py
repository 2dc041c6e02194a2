"""Compile the MNIST pipeline for Vertex AI Pipelines (KubeflowV2DagRunner), and optionally submit it.

    python vertex_runner.py --project P --gcs-root gs://BUCKET/mnist --image IMAGE [--submit]

Same flags as `mlpipe compile-vertex` (see `python vertex_runner.py --help`): the same
`create_pipeline()` as the local runner, with stock BigQueryExampleGen, Beam on Dataflow, every step
in the project's image and the Pusher to AI Platform Prediction or a Vertex AI endpoint.
"""

import sys

from mlpipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["compile-vertex", *sys.argv[1:]]))
