# The pipeline image: every KFP / Vertex AI step of kubeflow_runner.py runs in it, and so do the
# Dataflow, Flink or Spark workers (--sdk_container_image / environment_config).
#
#   docker build -t REGISTRY/cifar10-tfx:TAG . && docker push REGISTRY/cifar10-tfx:TAG
#
# The official TFX image brings Python, TFX 1.16.0 and Apache Beam's worker boot program
# (/opt/apache/beam/boot, its ENTRYPOINT, which Beam workers need: keep it). KFP and Vertex AI
# start steps with an explicit command, so the ENTRYPOINT does not get in their way.
FROM tensorflow/tfx:1.16.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A non-root user with a home (Keras and TF write caches there). Numeric in USER so that
# Kubernetes' runAsNonRoot can check it.
RUN groupadd --gid 10001 pipeline \
    && useradd --uid 10001 --gid 10001 --create-home --shell /bin/bash pipeline

WORKDIR /pipeline

# Dependencies first, from the lock alone: this layer is rebuilt only when the lock or setup.py
# change, not on every code edit. Same command as the README install (tfx declares
# Requires-Python <3.11; the lock is known to work past it).
COPY requirements/constraints.txt requirements/constraints.txt
COPY setup.py setup.py
RUN PIP_IGNORE_REQUIRES_PYTHON=1 python -m pip install --no-cache-dir \
        -c requirements/constraints.txt .

# The sources, owned by root and read-only for the user that runs them. The executors import
# pipeline, components and modules from here (PYTHONPATH), and ImportSchemaGen reads
# /pipeline/pipeline/schema/schema.pbtxt (kubeflow_runner.py --schema-file default).
COPY . .
ENV PYTHONPATH=/pipeline \
    HOME=/home/pipeline
USER 10001:10001
