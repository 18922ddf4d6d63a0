"""TF Serving's config messages, to parse the shipped configs as the server does.

ModelServerConfig comes from tensorflow-serving-api (real generated code). That wheel ships
neither monitoring_config_pb2 nor session_bundle_config_pb2, so MonitoringConfig and
BatchingParameters are declared here with the field names, numbers and types of the upstream
files at tag 2.16.1 (the server image's version) of github.com/tensorflow/serving:
tensorflow_serving/config/monitoring_config.proto and
tensorflow_serving/servables/tensorflow/session_bundle_config.proto. text_format then rejects
unknown fields and wrong types just as the server's parser does.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP, _MSG = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED, _F.TYPE_MESSAGE
_INT64, _STRING, _BOOL = (".google.protobuf.Int64Value", ".google.protobuf.StringValue",
                          ".google.protobuf.BoolValue")

# message: [(field, number, type, message type or None, label)], as in the upstream .proto files.
_MESSAGES = {
    "PrometheusConfig": [("enable", 1, _F.TYPE_BOOL, None, _OPT),
                         ("path", 2, _F.TYPE_STRING, None, _OPT)],
    "MonitoringConfig": [("prometheus_config", 1, _MSG, ".tensorflow.serving.PrometheusConfig",
                          _OPT)],
    "BatchingParameters": [
        ("max_batch_size", 1, _MSG, _INT64, _OPT),
        ("batch_timeout_micros", 2, _MSG, _INT64, _OPT),
        ("max_enqueued_batches", 3, _MSG, _INT64, _OPT),
        ("num_batch_threads", 4, _MSG, _INT64, _OPT),
        ("thread_pool_name", 5, _MSG, _STRING, _OPT),
        ("allowed_batch_sizes", 6, _F.TYPE_INT64, None, _REP),
        ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, None, _OPT),
        ("enable_large_batch_splitting", 8, _MSG, _BOOL, _OPT),
        ("max_execution_batch_size", 9, _MSG, _INT64, _OPT),
    ],
}


@cache
def message_class(name: str) -> type:
    """The class of a tensorflow.serving message: real generated code where the wheel has it."""
    if name in ("ModelServerConfig", "ModelConfig"):
        from tensorflow_serving.config import model_server_config_pb2

        return getattr(model_server_config_pb2, name)
    try:  # a future tensorflow-serving-api may ship these modules: prefer them then
        if name in ("MonitoringConfig", "PrometheusConfig"):
            from tensorflow_serving.config import monitoring_config_pb2

            return getattr(monitoring_config_pb2, name)
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return getattr(session_bundle_config_pb2, name)
    except ImportError:
        pass
    return _declared()[name]


@cache
def _declared() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="tests_support_tf_serving_configs.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    for msg_name, fields in _MESSAGES.items():
        msg = file.message_type.add(name=msg_name)
        for field_name, number, kind, type_name, label in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool.Add(file)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"tensorflow.serving.{name}")) for name in _MESSAGES}


def parse_text(text: str, name: str):
    """Parses text-format config `text` as the tensorflow.serving message `name`."""
    return text_format.Parse(text, message_class(name)())


def parse_file(path: Path, name: str):
    return parse_text(Path(path).read_text(), name)


# The message each shipped config file is, by file name (the server's flag that reads it).
CONFIG_MESSAGES = {
    "models.config": "ModelServerConfig",  # --model_config_file
    "models.ab.config": "ModelServerConfig",  # --model_config_file (the A/B example)
    "batching.config": "BatchingParameters",  # --batching_parameters_file
    "monitoring.config": "MonitoringConfig",  # --monitoring_config_file
}
