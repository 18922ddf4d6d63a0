"""Compiles the pipeline for Kubeflow Pipelines / Vertex AI: `cifar10-tfx compile-kfp ...`.

    python kubeflow_runner.py --pipeline-root gs://BUCKET/cifar10/root \\
        --data-root gs://BUCKET/cifar10/data --image REGISTRY/cifar10-tfx:TAG
"""
import sys

from cli.kubeflow import main

if __name__ == "__main__":
    sys.exit(main())
