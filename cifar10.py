"""Makes the project's custom artifact types importable by their KFP schema titles.

On KFP 2.x and Vertex AI, TFX's container entrypoint (kubeflow_v2_run_executor) rebuilds a custom
artifact type by importing its schema title, which is the type's TYPE_NAME, as a class path:
`cifar10.TFLiteModel` must be importable in the image. KFP also limits titles to one dot
(`namespace.Name`), so the class's real path (components.artifacts.TFLiteModel) cannot be the
title; this top-level module, found through the image's PYTHONPATH, is that namespace.
"""
from components.artifacts import BatchPredictions, TFLiteModel

__all__ = ["BatchPredictions", "TFLiteModel"]
