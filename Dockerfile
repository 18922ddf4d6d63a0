# The pipeline image: every KFP / Vertex AI step of kubeflow_runner.py runs in it, and so do the
# Dataflow, Flink or Spark workers (--sdk_container_image / environment_config).
#
#   docker build -t REGISTRY/cifar10-tfx:TAG . && docker push REGISTRY/cifar10-tfx:TAG
#
# Python 3.11 on Debian 12 (bookworm): the Python and OS the lock requirements/constraints.txt was
# resolved and tested on, so the install below is exactly the tested one. (tensorflow/tfx:1.16.0
# runs Python 3.10, where the lock cannot resolve: tensorflow-metadata 1.16.1 wants protobuf<4.21
# there.) tests/unit/test_docker_install.py checks that the FROM lines and the lock agree, and
# resolves the lock for this Python against the package index.

# Apache Beam's worker boot program, from the SDK image of the lock's apache-beam and this Python.
FROM apache/beam_python3.11_sdk:2.59.0 AS beam

FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A non-root user with a home (Keras and TF write caches there). Numeric in USER so that
# Kubernetes' runAsNonRoot can check it. The KFP launcher stages artifacts under /gcs, /minio and
# /s3: backends from 2.3 mount empty folders there, older ones need them writable in the image.
RUN groupadd --gid 10001 pipeline \
    && useradd --uid 10001 --gid 10001 --create-home --shell /bin/bash pipeline \
    && install -d -o 10001 -g 10001 /gcs /minio /s3

# /opt/apache/beam/boot starts a Beam SDK worker (the ENTRYPOINT below).
COPY --from=beam /opt/apache/beam /opt/apache/beam

WORKDIR /pipeline

# Dependencies first, from the lock alone: this layer is rebuilt only when the lock or setup.py
# change, not on every code edit. Same command as the README install (tfx declares
# Requires-Python <3.11; the lock is known to work past it). A few pins are sdists, two of them
# C/C++ (crcmod, pyfarmhash): g++ is there only while pip builds them, removed in the same layer.
COPY requirements/constraints.txt requirements/constraints.txt
COPY setup.py setup.py
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.2.0-3 \
    && PIP_IGNORE_REQUIRES_PYTHON=1 python -m pip install --no-cache-dir \
        -c requirements/constraints.txt . \
    && python -m pip check \
    && apt-get purge -y --auto-remove g++ \
    && rm -rf /var/lib/apt/lists/*

# The sources, owned by root and read-only for the user that runs them. The executors import
# pipeline, components, modules (and the other packages) from here (PYTHONPATH), and
# ImportSchemaGen reads /pipeline/pipeline/schema/schema.pbtxt (kubeflow_runner.py --schema-file
# default).
COPY . .
ENV PYTHONPATH=/pipeline \
    HOME=/home/pipeline
USER 10001:10001

# Beam workers (Dataflow's sdk_container_image, Flink/Spark DOCKER or EXTERNAL --worker_pool)
# start the image through its ENTRYPOINT, which must be Beam's boot. KFP and Vertex AI replace it:
# every step's spec sets the container command (python -m pipeline.container_entrypoint).
# To run something else: docker run --entrypoint python IMAGE -c '...'
ENTRYPOINT ["/opt/apache/beam/boot"]
