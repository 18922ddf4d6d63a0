"""The CIFAR-10 network and its optimizer: a fast-training CNN for a CPU budget.

The design follows what trains CIFAR-10 fastest per FLOP (the "airbench" line of work), measured on
this project's 2-core CPU (benchmarks/RESULTS.md):
- a 2x2 *whitening stem*: filters from the eigenvectors of the training images' 2x2 patch
  covariance (and their negatives, so ReLU keeps both signs), fitted once before training and
  frozen; its bias trains in the first steps (`whitening_bias_share`);
- three blocks of conv -> max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU (ReLU is the
  other choice), so the wide layers run at 15x15 and smaller instead of 32x32, where a CPU spends
  most of its time;
- BatchNorm without a learnt scale, identity ("dirac") initialisation of the first channels of each
  conv, a global max-pool head with scaled-down logits, Dropout before the head (Tuner knob);
- SGD with Nesterov momentum, warm-up then cosine (or linear) decay, label smoothing, L2 on the
  weights and a larger step for the BatchNorm biases.

Keras 3 (`import keras`) is the project's only Keras; `tf.keras` is never used, so the model does
not depend on the TF_USE_LEGACY_KERAS switch that tensorflow-transform flips on import.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from modules import contract

WHITENING_PATCH = 2
WHITENING_EPSILON = 5e-4  # relative to the mean eigenvalue; damps the noisiest patch directions
LOGIT_SCALE = 1.0 / 9.0
BATCHNORM_MOMENTUM = 0.8
BIAS_GRADIENT_SCALE = 64.0
REFERENCE_BATCH_SIZE = 256  # `learning_rate` is the peak rate at this batch size, scaled linearly
ACTIVATIONS = ("relu", "gelu")
# `compute_dtype`: "auto" picks bfloat16 where the CPU computes it natively, float32 elsewhere.
COMPUTE_DTYPE_AUTO, FLOAT32, BFLOAT16 = "auto", "float32", "bfloat16"
COMPUTE_DTYPES = (COMPUTE_DTYPE_AUTO, FLOAT32, BFLOAT16)
NATIVE_BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
LR_SCHEDULES = ("cosine", "linear")
WARMUP_SHARE = 0.2  # of all steps, from a fifth of the peak rate up to it
LR_FLOOR = 0.02  # the last step's rate, as a share of the peak

LOOKAHEAD_FINAL_DECAY = 0.95 ** 5  # the slow copy's inertia at the last pull (airbench's)

BATCHNORM_RECALIBRATION_BATCHES = 40  # 0.8**40: the old statistics weigh nothing afterwards


def block_widths(base_filters: int, stage2_width: float = 2.0) -> tuple[int, int, int]:
    return (base_filters, int(round(stage2_width * base_filters)), 3 * base_filters)


def native_bfloat16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Whether this machine's CPU has bfloat16 instructions (AVX512-BF16 or AMX), read from
    Linux's cpuinfo; without them bfloat16 has no hardware support, so "auto" keeps float32."""
    try:
        with open(cpuinfo_path, encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return bool(NATIVE_BFLOAT16_CPU_FLAGS & set(line.split(":", 1)[-1].split()))
    except OSError:
        pass
    return False


def compute_dtype(hparams: Mapping[str, Any] | None) -> str:
    """The dtype the blocks and head compute in (`compute_dtype`, "auto" resolved): bfloat16
    trains faster than float32 on a CPU with native bfloat16, and scored lower so far
    (benchmarks/ablations_full_budget). The weights stay float32 either way, and the export
    computes in float32 (export.float32_twin)."""
    hp = {**contract.DEFAULT_HPARAMS, **(hparams or {})}
    name = str(hp["compute_dtype"])
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"Unknown compute_dtype {name!r}; choose one of "
                         f"{', '.join(COMPUTE_DTYPES)}.")
    if name == COMPUTE_DTYPE_AUTO:
        on_gpu = bool(tf.config.list_physical_devices("GPU"))
        return BFLOAT16 if native_bfloat16() and not on_gpu else FLOAT32
    return name


def _conv(filters: int, name: str, policy: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name,
                               dtype=policy)


def _batchnorm(name: str, policy: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM, scale=False, name=name,
                                           dtype=policy)


def _block(x, filters: int, name: str, activation: str, policy: str):
    x = _conv(filters, f"{name}_conv1", policy)(x)
    x = keras.layers.MaxPooling2D(name=f"{name}_pool", dtype=policy)(x)
    x = _batchnorm(f"{name}_bn1", policy)(x)
    x = keras.layers.Activation(activation, name=f"{name}_act1", dtype=policy)(x)
    x = _conv(filters, f"{name}_conv2", policy)(x)
    x = _batchnorm(f"{name}_bn2", policy)(x)
    return keras.layers.Activation(activation, name=f"{name}_act2", dtype=policy)(x)


def build_model(hparams: Mapping[str, Any] | None = None) -> keras.Model:
    """Builds (uncompiled) the classifier: float [N, 32, 32, 3] in [0, 1] -> 10 probabilities.

    The whitening stem starts as a plain frozen conv; set it (`set_whitening`) from training
    images before training.
    """
    hp = {**contract.DEFAULT_HPARAMS, **(hparams or {})}
    inputs = keras.Input(shape=contract.IMAGE_SHAPE, name=contract.TRANSFORMED_IMAGE_KEY)
    whitening = keras.layers.Conv2D(
        2 * WHITENING_PATCH ** 2 * contract.IMAGE_CHANNELS, WHITENING_PATCH, padding="valid",
        name="whitening")
    # The stem's filters stay the fitted ones; with `whitening_bias_share` its bias trains in the
    # first steps (WhitenedNetSGD leaves the kernel alone; FreezeWhitening ends the bias' steps).
    whitening.trainable = whitening_bias_steps(hp, 1) > 0
    x = whitening(inputs)
    x = keras.layers.Activation("relu", name="whitening_relu")(x)
    activation = str(hp["activation"])
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; choose one of "
                         f"{', '.join(ACTIVATIONS)}.")
    # Mixed precision: float32 weights, the blocks and head computing in bfloat16; the cheap stem
    # and the softmax stay float32.
    policy = "mixed_bfloat16" if compute_dtype(hp) == BFLOAT16 else FLOAT32
    widths = block_widths(int(hp["base_filters"]), float(hp["stage2_width"]))
    for index, filters in enumerate(widths, start=1):
        x = _block(x, filters, f"block{index}", activation, policy)
    x = keras.layers.GlobalMaxPooling2D(name="pool", dtype=policy)(x)
    x = keras.layers.Dropout(float(hp["dropout"]), name="dropout", dtype=policy)(x)
    logits = keras.layers.Dense(contract.NUM_CLASSES, use_bias=False, name="logits",
                                dtype=policy)(x)
    # Max-pooled features are large; small logits keep the first steps from being confidently wrong.
    logits = keras.layers.Rescaling(LOGIT_SCALE, name="logit_scale", dtype=policy)(logits)
    outputs = keras.layers.Activation("softmax", name=contract.PROBABILITIES_OUTPUT,
                                      dtype=FLOAT32)(logits)
    model = keras.Model(inputs, outputs, name="cifar10_cnn")
    _dirac_initialise(model)
    return model


def _dirac_initialise(model: keras.Model) -> None:
    """Makes the first min(in, out) filters of each 3x3 conv an identity: signals pass at start."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.name.startswith("block"):
            kernel = np.asarray(layer.kernel)
            height, width, channels_in, channels_out = kernel.shape
            shared = min(channels_in, channels_out)
            kernel[:, :, :, :shared] = 0.0
            kernel[height // 2, width // 2, np.arange(shared), np.arange(shared)] = 1.0
            layer.kernel.assign(kernel)


def whitening_weights(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias that map each 2x2x3 patch to decorrelated, unit-variance components (+/-)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1:] != contract.IMAGE_SHAPE or len(images) < 2:
        raise ValueError(f"Whitening needs a batch of images shaped [N, "
                         f"{', '.join(map(str, contract.IMAGE_SHAPE))}]; got {images.shape}.")
    size = WHITENING_PATCH
    patches = np.stack([images[:, i:i + contract.IMAGE_HEIGHT - size + 1,
                               j:j + contract.IMAGE_WIDTH - size + 1, :]
                        for i in range(size) for j in range(size)], axis=3)
    patches = patches.reshape(-1, size * size * contract.IMAGE_CHANNELS)  # (i, j, channel) order
    mean = patches.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False))
    epsilon = WHITENING_EPSILON * eigenvalues.mean()
    filters = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + epsilon)  # [12, 12] columns
    filters = np.concatenate([filters, -filters], axis=1)  # [12, 24]
    kernel = filters.reshape(size, size, contract.IMAGE_CHANNELS, -1)
    bias = -mean @ filters
    return kernel.astype(np.float32), bias.astype(np.float32)


def set_whitening(model: keras.Model, weights: tuple[np.ndarray, np.ndarray]) -> None:
    """Sets the whitening stem to whitening_weights' (kernel, bias), computed from a
    sample of training images: the Tuner computes them once for all its trials."""
    model.get_layer("whitening").set_weights(list(weights))


@keras.saving.register_keras_serializable(package="cifar10")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from a fifth of the peak, then a straight line down to `floor` x peak.

    Keras' CosineDecay has the warm-up but no linear decay; PolynomialDecay has no warm-up.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, floor: float = LR_FLOOR):
        self.peak, self.floor = float(peak), float(floor)
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        start = self.peak / 5.0
        warming = start + (self.peak - start) * step / max(1, self.warmup_steps)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        done = keras.ops.minimum(1.0, (step - self.warmup_steps) / decay_steps)
        decaying = self.peak + (self.floor * self.peak - self.peak) * done
        return keras.ops.where(step < self.warmup_steps, warming, decaying)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "floor": self.floor}


def learning_rate_schedule(name: str, peak: float, total_steps: int
                           ) -> keras.optimizers.schedules.LearningRateSchedule:
    """The `lr_schedule` hyperparameter: warm-up over WARMUP_SHARE of the steps, then cosine or
    linear decay to LR_FLOOR x peak."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"Unknown lr_schedule {name!r}; choose one of {', '.join(LR_SCHEDULES)}.")
    warmup = max(1, int(WARMUP_SHARE * total_steps))
    if name == "linear":
        return WarmupLinearDecay(peak, warmup, total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 5.0, decay_steps=max(1, total_steps - warmup),
        warmup_target=peak, warmup_steps=warmup, alpha=LR_FLOOR)


@keras.saving.register_keras_serializable(package="cifar10")
class WhitenedNetSGD(keras.optimizers.SGD):
    """SGD (Nesterov) that adds L2 to every gradient and scales up the BatchNorm bias gradients.

    BatchNorm biases set where each activation opens; with scale-free BatchNorm they are the only
    per-channel knobs and learn far too slowly at the rate that suits the conv kernels.
    """

    def __init__(self, l2: float = 0.0, bias_gradient_scale: float = BIAS_GRADIENT_SCALE,
                 **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)
        self.bias_gradient_scale = float(bias_gradient_scale)

    def apply(self, grads, trainable_variables=None):
        variables = (self._trainable_variables if trainable_variables is None
                     else trainable_variables)
        adjusted = []
        for grad, variable in zip(grads, variables, strict=False):
            if grad is not None:
                if variable.path.endswith("beta"):
                    grad = grad * self.bias_gradient_scale
                grad = grad + self.l2 * variable.value
                if variable.path == "whitening/kernel":  # the stem trains its bias only
                    grad = tf.zeros_like(grad)
            adjusted.append(grad)
        return super().apply(adjusted, trainable_variables)

    def finalize_variable_values(self, var_list):
        # fit passes the model's trainable weights, which FreezeWhitening shortens mid-fit; the
        # weight averages line up with the variables this optimizer was built with.
        super().finalize_variable_values(self._trainable_variables)

    def get_config(self) -> dict:
        return {**super().get_config(), "l2": self.l2,
                "bias_gradient_scale": self.bias_gradient_scale}


def compile_model(model: keras.Model, hparams: Mapping[str, Any] | None, total_steps: int,
                  batch_size: int = REFERENCE_BATCH_SIZE) -> keras.Model:
    """SGD with Nesterov momentum: 20% linear warm-up, then cosine or linear decay
    (`lr_schedule`); label smoothing; L2; optionally an exponential moving average of the weights
    (`ema_momentum`)."""
    hp = {**contract.DEFAULT_HPARAMS, **(hparams or {})}
    peak = float(hp["learning_rate"]) * batch_size / REFERENCE_BATCH_SIZE
    schedule = learning_rate_schedule(str(hp["lr_schedule"]), peak, total_steps)
    ema_momentum = float(hp["ema_momentum"])
    if not 0.0 <= ema_momentum < 1.0:
        raise ValueError(f"ema_momentum must be in [0, 1), not {ema_momentum}.")
    # With an average, Keras' fit ends by writing the averaged weights into the model; their
    # BatchNorm statistics then need `recalibrate_batchnorm`.
    optimizer = WhitenedNetSGD(learning_rate=schedule, momentum=0.85, nesterov=True,
                               l2=float(hp["weight_decay"]), use_ema=ema_momentum > 0.0,
                               ema_momentum=ema_momentum or 0.99)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(hp["label_smoothing"])),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=False)  # XLA is slower than oneDNN for these convolutions on CPU (measured)
    return model


class Lookahead(keras.callbacks.Callback):
    """Lookahead over the whole model state, airbench's way: every `period` steps a slow copy
    moves toward the weights, which then restart from it, so the model ends on the slow
    copy.

    The slow copy's inertia grows with the cube of training progress (none at first, up to
    LOOKAHEAD_FINAL_DECAY at the end), so it averages only where the learning rate has decayed.
    BatchNorm's moving statistics are averaged with the weights, so they stay the statistics
    of the weights that are exported (no recalibration needed).
    """

    def __init__(self, total_steps: int, period: int, final_decay: float = LOOKAHEAD_FINAL_DECAY):
        super().__init__()
        self.total_steps, self.period = max(1, int(total_steps)), int(period)
        self.final_decay = float(final_decay)
        self._step = 0
        self._slow: list[tf.Variable] = []
        self._pull = None

    def on_train_begin(self, logs=None) -> None:
        state = [w for w in self.model.weights if w.trainable or "moving" in w.path]
        self._slow = [tf.Variable(keras.ops.convert_to_tensor(w), trainable=False)
                      for w in state]
        self._step = 0

        @tf.function
        def pull(decay: tf.Tensor) -> None:
            for weight, slow in zip(state, self._slow, strict=True):
                slow.assign(decay * slow + (1.0 - decay) * keras.ops.convert_to_tensor(weight))
                weight.assign(slow)

        self._pull = pull

    def decay(self, step: int) -> float:
        """The slow copy's share at a pull after `step` steps."""
        return self.final_decay * min(1.0, step / self.total_steps) ** 3

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._step += 1
        if self._step % self.period == 0:
            self._pull(tf.constant(self.decay(self._step), tf.float32))

    def on_train_end(self, logs=None) -> None:
        # Steps since the last pull count as one more period; then the model is the slow copy.
        if self._step % self.period:
            self._pull(tf.constant(self.decay(self._step), tf.float32))


class FreezeWhitening(keras.callbacks.Callback):
    """Ends the whitening stem's bias training after `steps` steps: the stem turns
    non-trainable and the train step is traced again, so the steps after it skip the backward
    pass into the stem (the input gradient of the first block's conv; measured: the epochs that
    train the bias took 0-9% longer, the later ones no longer than with a frozen stem)."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = int(steps)
        self._step = 0

    def on_train_begin(self, logs=None) -> None:
        self._step = 0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._step += 1
        stem = self.model.get_layer("whitening")
        if self._step >= self.steps and stem.trainable:
            stem.trainable = False
            self.model.make_train_function(force=True)  # fit reads it anew for every step


def whitening_bias_steps(hparams: Mapping[str, Any] | None, total_steps: int) -> int:
    """How many of `total_steps` train the whitening stem's bias (`whitening_bias_share`)."""
    hp = {**contract.DEFAULT_HPARAMS, **(hparams or {})}
    share = float(hp["whitening_bias_share"])
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"whitening_bias_share must be in [0, 1], not {share}.")
    return math.ceil(share * total_steps)


def training_callbacks(hparams: Mapping[str, Any] | None, total_steps: int,
                       batch_size: int) -> list[keras.callbacks.Callback]:
    """The fit callbacks the hyperparameters ask for: lookahead (off by default), a pull every
    `lookahead_images` images, at least every step (airbench pulls every 5 steps of 1,024
    images); the end of the stem's bias training (when `whitening_bias_share` is in (0, 1))."""
    hp = {**contract.DEFAULT_HPARAMS, **(hparams or {})}
    callbacks: list[keras.callbacks.Callback] = []
    images = int(hp["lookahead_images"])
    if images > 0:
        callbacks.append(Lookahead(total_steps, period=max(1, round(images / batch_size))))
    bias_steps = whitening_bias_steps(hp, total_steps)
    if 0 < bias_steps < total_steps:
        callbacks.append(FreezeWhitening(bias_steps))
    return callbacks


def recalibrate_batchnorm(model: keras.Model, batches) -> None:
    """Re-estimates the BatchNorm moving statistics for the model's current weights.

    Averaged weights (`ema_momentum`) never produced the statistics that training accumulated
    for the raw ones; a few forward passes in training mode, with no weight update, fix that.
    `batches` yields (images, labels), at least BATCHNORM_RECALIBRATION_BATCHES of them.
    """
    forward = tf.function(lambda images: model(images, training=True))
    for images, _ in batches.take(BATCHNORM_RECALIBRATION_BATCHES):
        forward(images)
