"""The Keras layer that puts a user's declared preprocessing in front of their model
(:mod:`lifelens.model_formats`), so every explanation sees LifeLens inputs in [0, 255]."""
from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="lifelens")
class InputScaling(keras.layers.Layer):
    """x -> (x reversed along channels if ``reverse_channels``) * scale + offset, per channel.

    scale, offset: one float per channel. Has no weights; gradients pass through.
    """

    def __init__(self, scale, offset, reverse_channels: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(v) for v in scale]
        self.offset = [float(v) for v in offset]
        self.reverse_channels = bool(reverse_channels)

    def call(self, inputs):
        x = keras.ops.flip(inputs, axis=-1) if self.reverse_channels else inputs
        return x * keras.ops.convert_to_tensor(self.scale, x.dtype) + keras.ops.convert_to_tensor(self.offset, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset,
                "reverse_channels": self.reverse_channels}
