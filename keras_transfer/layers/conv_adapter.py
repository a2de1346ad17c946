"""1x1 convolution adapter (Rebuffi et al., 2017/2018), series or parallel, the identity at init."""

import keras
import numpy as np
from keras import ops

from keras_transfer.utils import validation

_MODES = ("series", "parallel")


def _as_tuple(name, value, rank):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * rank
    value = tuple(value)
    if len(value) != rank or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(
            f"`{name}` must be a positive int or a tuple of {rank} positive ints. Received: {name}={value!r}"
        )
    return value


def _optional_tuple(name, value):
    """None, an int or a sequence of positive ints -> None or a validated tuple."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"`{name}` must be a positive int or a tuple of positive ints. Received: {name}={value!r}")
    return _as_tuple(name, value, len(value))


def aligned_positions(input_size, output_size, kernel_size, stride, dilation, padding):
    """Input positions read by the centre tap of a convolution, for one spatial axis.

    A convolution's output `i` reads input `i*stride - pad_before + j*dilation` with tap `j`
    (TensorFlow / Keras "same" puts the extra padding after). The parallel adapter reads the
    centre tap `j = (kernel_size - 1) // 2`, so that `f * x + diag(alpha) * x` is exactly the
    convolution with `alpha` added to the centre of the filter (the parallel adapter of
    Rebuffi et al., 2018). Works with symbolic (dynamic) sizes.

    Args:
        input_size: positions of the convolution's input along the axis.
        output_size: positions of its output along the axis.
        kernel_size: the filter's size along the axis (odd).
        stride: the convolution's stride along the axis.
        dilation: the convolution's dilation rate along the axis.
        padding: "valid" or "same".

    Returns:
        The `output_size` input positions: a NumPy int array for static sizes,
        else a tensor.
    """
    centre = ((kernel_size - 1) // 2) * dilation
    if isinstance(input_size, int) and isinstance(output_size, int):
        # Static sizes: plain integers (no graph ops for the common case).
        pad_total = max((output_size - 1) * stride + (kernel_size - 1) * dilation + 1 - input_size, 0)
        offset = centre - pad_total // 2 if padding == "same" else centre
        return np.arange(output_size) * stride + offset
    if padding == "same":
        pad_total = ops.maximum((output_size - 1) * stride + (kernel_size - 1) * dilation + 1 - input_size, 0)
        offset = centre - pad_total // 2
    else:
        offset = centre
    return offset + stride * ops.arange(output_size)


@keras.saving.register_keras_serializable(package="keras_transfer")
class ConvAdapter(keras.layers.Layer):
    """A 1x1 convolution adapter, in series or in parallel with a convolution.

    With `alpha` a `C x D` matrix (or a `D` vector when `per_channel=True`) applied
    at every spatial position:

    - `mode="series"`: `rho(x) = x + diag_1(alpha) * x = diag_1(alpha + I) * x`,
      inserted after a convolution `f * x` (input: that convolution's output,
      `C = D`). Folds into the filter as a multiplicative low-rank perturbation
      (the residual adapter of Rebuffi et al., 2017).
    - `mode="parallel"`: `y = f * x + diag_1(alpha) * x` (inputs: a list
      `[x, f_x]`, the convolution's input and output). Folds into the filter as
      an additive perturbation of its centre tap (Rebuffi et al., 2018).
      `host_kernel_size`, `host_strides`, `host_padding` and
      `host_dilation_rate` describe the convolution `f` so that the 1x1 branch
      reads the same input positions as the filter's centre tap (strided and
      "valid" hosts included).

    `alpha` starts at zero: the adapter is the identity at initialisation. Works on
    any rank >= 2, channels last. No Keras library has these adapters (AdapterHub
    and PEFT are PyTorch), so they are written here.

    Args:
        mode: "series" or "parallel".
        per_channel: `alpha` is a per-channel scale (diagonal, `D` parameters)
            instead of a full `C x D` matrix.
        use_bias: add a bias `D` (also foldable into the host's bias).
        alpha_initializer: initializer of `alpha` (zeros = identity at init).
        host_kernel_size: parallel mode only: the host convolution's kernel
            size, an odd int or tuple of odd ints (default 1).
        host_strides: parallel mode only: the host's strides (default 1).
        host_padding: the host's padding, "valid" or "same".
        host_dilation_rate: parallel mode only: the host's dilation rate
            (default 1).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: series mode: the host convolution's output. Parallel mode: a
            list `[x, f_x]`, the host convolution's input and output.

    Raises:
        ValueError: if `mode` or `host_padding` is unknown, a host geometry
            argument is not a positive int (or tuple of them), is given in
            series mode, or `host_kernel_size` is even; when built, if the
            inputs do not match the mode, the host geometry or `per_channel`.

    Reference:
        Rebuffi et al., "Learning multiple visual domains with residual
        adapters", NeurIPS 2017; Rebuffi et al., "Efficient parametrization of
        multi-domain deep neural networks", CVPR 2018.

    Example:

    >>> adapter = keras_transfer.layers.ConvAdapter(mode="series")
    >>> x = np.ones((1, 4, 4, 8), "float32")
    >>> bool(np.allclose(adapter(x), x))  # the identity at initialisation
    True
    >>> tuple(adapter.alpha.shape)
    (8, 8)
    >>> images = keras.Input((8, 8, 3))
    >>> conv = keras.layers.Conv2D(16, 3, strides=2, padding="same")
    >>> parallel = keras_transfer.layers.ConvAdapter(
    ...     mode="parallel", host_kernel_size=3, host_strides=2, host_padding="same")
    >>> tuple(parallel([images, conv(images)]).shape)
    (None, 4, 4, 16)
    """

    def __init__(
        self,
        mode="series",
        per_channel=False,
        use_bias=False,
        alpha_initializer="zeros",
        host_kernel_size=None,
        host_strides=None,
        host_padding="valid",
        host_dilation_rate=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mode = validation.check_one_of("mode", mode, _MODES)
        self.per_channel = bool(per_channel)
        self.use_bias = bool(use_bias)
        self.alpha_initializer = keras.initializers.get(alpha_initializer)
        padding = str(host_padding).lower()
        self.host_padding = validation.check_one_of(
            "host_padding",
            padding,
            ("valid", "same"),
            "Causal or explicit paddings have no single centre tap; use a 'valid' or 'same' host.",
        )
        self.host_kernel_size = _optional_tuple("host_kernel_size", host_kernel_size)
        self.host_strides = _optional_tuple("host_strides", host_strides)
        self.host_dilation_rate = _optional_tuple("host_dilation_rate", host_dilation_rate)
        if self.mode == "series" and any(
            v is not None for v in (self.host_kernel_size, self.host_strides, self.host_dilation_rate)
        ):
            raise ValueError(
                "`host_kernel_size`, `host_strides` and `host_dilation_rate` only apply to "
                f"mode='parallel'. Received: mode={self.mode!r} with host_kernel_size="
                f"{self.host_kernel_size}, host_strides={self.host_strides}, "
                f"host_dilation_rate={self.host_dilation_rate}"
            )
        if self.host_kernel_size is not None and any(k % 2 == 0 for k in self.host_kernel_size):
            raise ValueError(
                "`host_kernel_size` must be odd along every axis: an even filter has no centre tap "
                f"for the parallel 1x1 branch. Received: host_kernel_size={self.host_kernel_size}"
            )

    # ----------------------------------------------------------------- build
    def _shapes(self, input_shape):
        if self.mode == "parallel":
            if not (
                isinstance(input_shape, (list, tuple))
                and len(input_shape) == 2
                and isinstance(input_shape[0], (list, tuple))
            ):
                raise ValueError(
                    "A parallel `ConvAdapter` takes a list `[x, f_x]`: the host convolution's input "
                    f"and output. Received: input_shape={input_shape}"
                )
            return tuple(input_shape[0]), tuple(input_shape[1])
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            raise ValueError(
                "A series `ConvAdapter` takes a single tensor (the convolution's output). "
                f"Received: input_shape={input_shape}. Use mode='parallel' for `[x, f_x]`."
            )
        return tuple(input_shape), tuple(input_shape)

    def build(self, input_shape):
        x_shape, fx_shape = self._shapes(input_shape)
        for name, shape in (("x", x_shape), ("f_x", fx_shape)):
            if len(shape) < 2:
                raise ValueError(
                    f"`ConvAdapter` needs inputs of rank >= 2 (batch, ..., channels). Received: "
                    f"{name} with shape {shape}. Add a batch axis or reshape the input."
                )
            if shape[-1] is None:
                raise ValueError(
                    f"`ConvAdapter` needs a known channel (last) axis. Received: {name} with shape {shape}"
                )
        if len(x_shape) != len(fx_shape):
            raise ValueError(
                "A parallel `ConvAdapter` needs `x` and `f_x` of the same rank. "
                f"Received: x with shape {x_shape}, f_x with shape {fx_shape}"
            )
        self.in_channels, self.out_channels = x_shape[-1], fx_shape[-1]
        spatial = len(x_shape) - 2
        if self.mode == "parallel":

            def per_axis(name):
                value = getattr(self, name) or (1,)
                value = value * spatial if len(value) == 1 else value  # an int applies to every axis
                return _as_tuple(name, value, spatial) if spatial else ()

            self._kernel_size = per_axis("host_kernel_size")
            self._strides = per_axis("host_strides")
            self._dilation = per_axis("host_dilation_rate")
            if not spatial and any(v is not None for v in (self.host_kernel_size, self.host_strides)):
                raise ValueError(
                    "`host_kernel_size`/`host_strides` need spatial axes; inputs of rank 2 have none. "
                    f"Received: x with shape {x_shape}"
                )
            for axis, (k, st, d) in enumerate(zip(self._kernel_size, self._strides, self._dilation), start=1):
                n_in, n_out = x_shape[axis], fx_shape[axis]
                if n_in is None or n_out is None:
                    continue
                if self.host_padding == "same":
                    expected = -(-n_in // st)
                else:
                    expected = (n_in - (k - 1) * d - 1) // st + 1
                if n_out != expected:
                    raise ValueError(
                        "A parallel `ConvAdapter`'s host geometry does not match its inputs: spatial axis "
                        f"{axis} of x has {n_in} positions and f_x has {n_out}, which a host with "
                        f"kernel_size={k}, strides={st}, dilation_rate={d}, padding={self.host_padding!r} "
                        "cannot produce. Pass the host convolution's geometry (host_kernel_size, "
                        "host_strides, host_padding, host_dilation_rate)."
                    )
        if self.per_channel and self.in_channels != self.out_channels:
            raise ValueError(
                "`per_channel=True` needs as many input as output channels (a diagonal alpha). "
                f"Received: {self.in_channels} input and {self.out_channels} output channels. "
                "Use per_channel=False for a full C x D alpha."
            )
        shape = (self.out_channels,) if self.per_channel else (self.in_channels, self.out_channels)
        self.alpha = self.add_weight(name="alpha", shape=shape, initializer=self.alpha_initializer)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.out_channels,), initializer="zeros")
        self.built = True

    # ------------------------------------------------------------------ call
    def _align(self, x, fx):
        """Picks the input positions under the host filter's centre tap (parallel mode)."""
        for axis, (k, s, d) in enumerate(zip(self._kernel_size, self._strides, self._dilation), start=1):
            n_in, n_out = x.shape[axis], fx.shape[axis]
            if n_in is None or n_out is None:
                n_in, n_out = ops.shape(x)[axis], ops.shape(fx)[axis]
            positions = aligned_positions(n_in, n_out, k, s, d, self.host_padding)
            if isinstance(positions, np.ndarray):
                if n_in == n_out and np.array_equal(positions, np.arange(n_in)):
                    continue  # the centre tap reads the same position: nothing to gather
                positions = positions.astype("int32")
            x = ops.take(x, positions, axis=axis)
        return x

    def _branch(self, x):
        if self.per_channel:
            out = ops.multiply(x, self.alpha)
        else:
            out = ops.matmul(x, self.alpha)
        if self.use_bias:
            out = ops.add(out, self.bias)
        return out

    def call(self, inputs):
        if self.mode == "series":
            return ops.add(inputs, self._branch(inputs))
        x, fx = inputs
        return ops.add(fx, ops.cast(self._branch(self._align(x, fx)), fx.dtype))

    def compute_output_shape(self, input_shape):
        return self._shapes(input_shape)[1]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "per_channel": self.per_channel,
                "use_bias": self.use_bias,
                "alpha_initializer": keras.initializers.serialize(self.alpha_initializer),
                "host_kernel_size": self.host_kernel_size,
                "host_strides": self.host_strides,
                "host_padding": self.host_padding,
                "host_dilation_rate": self.host_dilation_rate,
            }
        )
        return config
