# The image of this project: every step of the Vertex AI pipeline runs in it, and so does every
# Dataflow worker (--sdk_container_image). Build and push with Cloud Build (README, "Run it in Google
# Cloud"):  gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/mlpipe/mnist-automl:TAG .
#
# The TFX 1.15.1 image already holds the whole stack (TFX, TensorFlow 2.15, TFDV/TFT/TFMA, Beam with
# its SDK worker harness in /opt/apache/beam) and keeps ENTRYPOINT /opt/apache/beam/boot, which is
# what Dataflow starts; Vertex AI Pipelines sets each step's command itself.
FROM gcr.io/tfx-oss-public/tfx:1.15.1

# adanet's metadata pins absl<1, protobuf<4, ... which fight the stack: no dependencies
# (models/adanet_compat.py maps the TF module it imports to its TF 2.15 home).
RUN python -m pip install --no-cache-dir --no-deps adanet==0.9.0

# /mlpipe must stay mlpipe.cloud.config.IMAGE_SOURCE_DIR: the compiled pipeline reads the curated
# schema from /mlpipe/pipeline/schema/schema.pbtxt.
WORKDIR /mlpipe
COPY setup.py ./
COPY mlpipe ./mlpipe
COPY pipeline ./pipeline
COPY models ./models

# The packages only: the image provides their dependencies (requirements.lock pins the local venv).
# The import check runs outside the source tree, so it proves the installed copy is complete.
RUN python -m pip install --no-cache-dir --no-deps . \
    && cd / && python -c "import models.model, pipeline.pipeline, mlpipe.cloud.config"
