"""Clients, tooling and container configs for serving the CIFAR-10 model with TF Serving.

Importing this package is cheap: TensorFlow is only imported when a gRPC call or a model
download needs it.
"""
from serving.client import (  # noqa: F401
    ImageError,
    InputError,
    Prediction,
    ServerError,
    ServingClient,
    ServingError,
    ServingTimeoutError,
    ServingUnavailableError,
    build_grpc_request,
    build_rest_payload,
    parse_grpc_response,
    parse_rest_response,
    rest_predict_url,
)
