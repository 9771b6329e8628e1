"""The two-input / two-output convolutional network.

    image  (28, 28, 1) raw MNIST pixels 0-255 --> CNN --> digit (10-way softmax)
    addend (10,) one-hot  ----------------------------+--> sum (19 probabilities)

The sum head turns the digit's probabilities and the addend into the sum's.
Three heads can be built (`SUM_HEADS`); EXPERIMENTS.md ("Does it add?") compares them:

- "outer_product" (the default): the 100 (digit, addend) pair features, one per
  cell of the addition table, mapped to the 19 sums by dense layers. It learns
  the table cell by cell: a cell that training never filled has no answer.
- "number_line": a small learned MLP reads what number the addend's one-hot
  stands for, as probabilities over 0-9, and `AddDistributions` adds the two:
  P(sum = s) = sum over d of P(digit = d) P(addend = s - d). Adding a shifts
  every digit's probabilities by the same amount, so a (digit, addend) pair
  never seen in training is answered as well as the others.
- "concat_mlp": a dense layer on the digit's probabilities next to the addend
  (the original project's kind); it too learns the table by rote.
"""

import warnings

import keras
import numpy as np
from keras import layers, ops

from data_creation import IMAGE_SIZE, NUM_DIGITS, NUM_SUMS

FILTERS = (16, 48, 64, 128)  # the four convolutions: few filters on the large maps, more as the maps shrink
DENSE_UNITS = 128
DROPOUT = 0.3
SUM_UNITS = 64  # hidden units of the outer_product and concat_mlp heads
ADDEND_UNITS = 32  # hidden units of the number_line head's addend reader
DEFAULT_SUM_HEAD = "outer_product"  # chosen on validation over seeds 0-3 (EXPERIMENTS.md)
BN_MOMENTUM = 0.9  # Keras' 0.99 leaves the moving statistics far off after a few hundred steps


def conv_block(x, filters, kernel_size, name, pool=False):
    """Conv (valid padding, no bias) -> [2x2 max pool] -> batch norm -> ReLU.

    Pooling before batch norm and ReLU gives the same kind of block (max pooling
    commutes with the ReLU) but normalises a map a quarter the size.
    """
    x = layers.Conv2D(filters, kernel_size, use_bias=False, name=f"{name}_conv")(x)
    if pool:
        x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


@keras.saving.register_keras_serializable(package="mnist_digit_sum")
class AddDistributions(layers.Layer):
    """The probabilities of a + b over 0-18, given those of two independent numbers a and b over 0-9.

    P(a + b = s) is the sum of P(a) P(b) over the pairs with a + b = s: the
    anti-diagonals of the 10 x 10 outer product. The layer has no weights; it
    knows how numbers add, not what the addend's one-hot means.
    """

    def call(self, inputs):
        a, b = inputs
        pair_to_sum = np.eye(NUM_SUMS)[np.add.outer(np.arange(NUM_DIGITS), np.arange(NUM_DIGITS))]  # (10, 10, 19)
        return ops.einsum("ni,nj,ijs->ns", a, b, ops.cast(pair_to_sum, a.dtype))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], NUM_SUMS)


def number_line_head(digit, addend):
    """The addend's value as probabilities over 0-9, read by a small learned MLP, added to the digit's by
    `AddDistributions`. (One Dense layer alone reads the addend too, but learns it far more slowly: each of
    its logits is one weight, which the optimizer moves by about one learning rate per step.)"""
    hidden = layers.Dense(ADDEND_UNITS, activation="relu", name="addend_hidden")(addend)
    addend_value = layers.Dense(NUM_DIGITS, activation="softmax", name="addend_value")(hidden)
    return AddDistributions(dtype="float32", name="sum")([digit, addend_value])


def outer_product_head(digit, addend):
    """Outer product digit-probabilities x addend one-hot, (10, 1) * (1, 10) -> 100 pair features -> dense."""
    digit_column = layers.Reshape((NUM_DIGITS, 1), name="digit_column")(digit)
    addend_row = layers.Reshape((1, NUM_DIGITS), name="addend_row")(addend)
    pairs = layers.Multiply(name="digit_addend_pairs")([digit_column, addend_row])
    pairs = layers.Flatten(name="pair_features")(pairs)
    hidden = layers.Dense(SUM_UNITS, activation="relu", name="sum_hidden")(pairs)
    return layers.Dense(NUM_SUMS, activation="softmax", dtype="float32", name="sum")(hidden)


def concat_mlp_head(digit, addend):
    """The digit's probabilities next to the addend one-hot (20 numbers) -> dense -> the 19 sums."""
    both = layers.Concatenate(name="digit_and_addend")([digit, addend])
    hidden = layers.Dense(SUM_UNITS, activation="relu", name="sum_hidden")(both)
    return layers.Dense(NUM_SUMS, activation="softmax", dtype="float32", name="sum")(hidden)


SUM_HEADS = {"outer_product": outer_product_head, "concat_mlp": concat_mlp_head, "number_line": number_line_head}


def build_model(sum_head=DEFAULT_SUM_HEAD, width=1.0):
    """Return the uncompiled functional model with inputs `image`, `addend` and outputs `digit`, `sum`.

    `sum_head` names one of `SUM_HEADS`. Valid convolutions shrink the maps
    quickly (28 -> 24 -> 12 -> 10 -> 8 -> 4 -> 2) and the widths grow as they
    shrink, which keeps the cost near 3 M multiply-adds per image: small enough
    to train in minutes on a laptop CPU. `width` multiplies the number of
    filters and units of the image branch. The outputs are float32 under any
    dtype policy (e.g. "mixed_bfloat16"), so that losses and saved
    probabilities keep full precision.
    """
    if sum_head not in SUM_HEADS:
        raise ValueError(f"sum_head must be one of {sorted(SUM_HEADS)}, got {sum_head!r}")
    if not width > 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    filters = [round(width * count) for count in FILTERS]
    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    addend = keras.Input((NUM_DIGITS,), name="addend")

    x = layers.Rescaling(1 / 255, name="scale_pixels")(image)  # 0-255 -> 0-1 inside the model
    x = conv_block(x, filters[0], 5, "conv1", pool=True)  # 28 -> 24 -> 12x12x16
    x = conv_block(x, filters[1], 3, "conv2")  # 10x10x48
    x = conv_block(x, filters[2], 3, "conv3", pool=True)  # 8 -> 4x4x64
    x = conv_block(x, filters[3], 3, "conv4")  # 2x2x128
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(DROPOUT, name="features_dropout")(x)
    x = layers.Dense(round(width * DENSE_UNITS), activation="relu", name="features")(x)
    x = layers.Dropout(DROPOUT, name="head_dropout")(x)
    digit = layers.Dense(NUM_DIGITS, activation="softmax", dtype="float32", name="digit")(x)
    total = SUM_HEADS[sum_head](digit, addend)
    return keras.Model({"image": image, "addend": addend}, {"digit": digit, "sum": total}, name="mnist_digit_sum")


@keras.saving.register_keras_serializable(package="mnist_digit_sum")
class AdamWWithEMAWarmup(keras.optimizers.AdamW):
    """AdamW whose weight average warms up: at step t its momentum is min(ema_momentum, (1 + t) / (10 + t)),
    so the average starts out as the live weights and lengthens its memory as training goes on (as
    TensorFlow's ExponentialMovingAverage does with `num_updates`). Keras' optimizers update their
    average in `_update_model_variables_moving_average`; this subclass replaces that one step."""

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        step = ops.cast(self.iterations, "float32")
        momentum = ops.minimum(self.ema_momentum, (1 + step) / (10 + step))
        for variable, average in zip(trainable_variables, self._model_variables_moving_average, strict=True):
            if average is not None:
                weight = ops.cast(momentum, variable.dtype)
                average.assign(weight * average + (1 - weight) * variable)


def compile_model(model, learning_rate, weight_decay, ema_momentum, label_smoothing=0.0, ema_warmup=False):
    """AdamW, and categorical cross-entropy and accuracy on both one-hot outputs, keyed by output name.

    `learning_rate` is a float or a schedule. The optimizer keeps a moving average
    of the weights (`use_ema`; momentum 0.999 averages about the last 1,000 steps),
    which `keras.callbacks.SwapEMAWeights` puts in the model to evaluate and save.
    `label_smoothing` moves that share of each one-hot target evenly onto all classes;
    `ema_warmup` uses `AdamWWithEMAWarmup`.
    """
    optimizer_class = AdamWWithEMAWarmup if ema_warmup else keras.optimizers.AdamW
    optimizer = optimizer_class(
        learning_rate=learning_rate, weight_decay=weight_decay, use_ema=True, ema_momentum=ema_momentum
    )
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    model.compile(
        optimizer=optimizer,
        jit_compile=False,  # XLA trains this small model more slowly on a CPU (EXPERIMENTS.md)
        loss={"digit": loss, "sum": loss},
        metrics={"digit": ["accuracy"], "sum": ["accuracy"]},
    )
    return model


def save_model_plot(model, path="model_plot.png"):
    """Draw the network with `keras.utils.plot_model`; warn (one line) instead of failing without graphviz."""
    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True, dpi=72)
    except ImportError as error:
        warnings.warn(f"model plot skipped: {error}", stacklevel=2)
        return False
    return True
