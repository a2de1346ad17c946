"""DoRA's weight-decomposed kernel, shared by `DoRADense`, `DoRAEinsumDense` and `DoRAConv2D`.

    W' = m * V / ||V||_c,   V = W0 + (alpha / rank) * A B

`||.||_c` is the norm over the kernel's input axes (one per output unit), `m` a trainable
magnitude initialised to `||W0||_c`, `A` (input axes + rank, He-uniform) and `B` (rank +
output axes, zeros) the LoRA direction update. Keras has LoRA (`enable_lora`) but no DoRA,
so the decomposition is written here once and mixed into the three Keras layer classes;
each class only says which kernel axes are its inputs (`dora_axes`).
"""

import math

import keras
from keras import ops

from keras_transfer.utils import model_graph
from keras_transfer.utils import validation

DORA_VARIABLE_NAMES = ("dora_kernel_a", "dora_kernel_b", "dora_magnitude")

# Floor of ||V||_c^2: keeps an all-zero kernel column (m = 0) finite instead of 0 / 0.
_MIN_SQUARED_NORM = 1e-30


def einsum_kernel_axes(equation, kernel_rank):
    """`(input_axes, output_axes)` of an EinsumDense kernel from its equation.

    Input axes are the kernel letters contracted with the input (absent from the output);
    every other kernel axis indexes an output element and gets its own magnitude.
    """
    inputs, output = equation.split("->")
    x_spec, kernel_spec = inputs.split(",")
    kernel_spec = kernel_spec.replace("...", "")
    if len(kernel_spec) != kernel_rank:
        raise ValueError(f"Cannot read the kernel axes of EinsumDense equation {equation!r}.")
    in_axes = tuple(i for i, c in enumerate(kernel_spec) if c in x_spec and c not in output)
    out_axes = tuple(i for i in range(kernel_rank) if i not in in_axes)
    return in_axes, out_axes


def check_dora_rank(rank, kernel_shape, in_axes, out_axes, where=""):
    """Raises a ValueError unless `1 <= rank <= min(input size, output size)` of the kernel."""
    fan_in = math.prod(kernel_shape[i] for i in in_axes)
    fan_out = math.prod(kernel_shape[i] for i in out_axes)
    limit = min(fan_in, fan_out)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= limit:
        raise ValueError(
            f"`rank` must be an int between 1 and min(kernel input size, output size) = "
            f"min({fan_in}, {fan_out}) = {limit}{where}. Received: rank={rank!r}. Pass a smaller "
            "positive rank, e.g. rank=4."
        )


class DoRAKernelMixin:
    """The DoRA variables, kernel, config and saving of a Keras `Dense` / `EinsumDense` / `Conv`."""

    def init_dora(self, dora_rank, dora_alpha, dora_detach_norm):
        if dora_rank is not None:
            validation.check_positive_int("dora_rank", dora_rank, "Pass the DoRA rank, e.g. dora_rank=4, or None.")
        if dora_alpha is not None:
            validation.check_positive_float("dora_alpha", dora_alpha)
        self.dora_rank = dora_rank
        self.dora_alpha = dora_alpha
        self.dora_detach_norm = bool(dora_detach_norm)
        self.dora_enabled = False
        self.dora_merged_save = False  # True on attention projections converted in place

    def dora_axes(self):
        """`(input_axes, output_axes)` of the kernel; the magnitude has the output axes' shape."""
        raise NotImplementedError

    def build(self, input_shape):
        super().build(input_shape)
        self.build_dora()

    @property
    def kernel(self):
        if getattr(self, "dora_enabled", False):
            return self.dora_kernel()
        return super().kernel

    def get_config(self):
        return self.dora_config(super().get_config())

    def enable_dora(self, rank, dora_alpha=None, detach_norm=False):
        """Turns DoRA on (built layer): adds `A`, `B`, `m = ||W0||_c`; freezes kernel and bias.

        Args:
            rank: int in `[1, min(input size, output size)]` of the kernel.
            dora_alpha: the scale numerator (default: `rank`).
            detach_norm: no gradient through `||V||_c`.

        Raises:
            ValueError: if the layer is not built, has DoRA or LoRA enabled, or `rank` is invalid.
        """
        if not self.built:
            raise ValueError(f"Layer '{self.name}' must be built before enable_dora().")
        if self.dora_enabled or getattr(self, "lora_enabled", False):
            raise ValueError(f"Layer '{self.name}' already has DoRA or LoRA enabled.")
        base = model_graph.base_weight(self)
        shape = tuple(base.shape)
        in_axes, out_axes = self.dora_axes()
        check_dora_rank(rank, shape, in_axes, out_axes, f" for layer '{self.name}'")
        in_shape = tuple(shape[i] for i in in_axes)
        out_shape = tuple(shape[i] for i in out_axes)

        def create():
            self.dora_kernel_a = self.add_weight(
                name="dora_kernel_a", shape=in_shape + (rank,), initializer="he_uniform"
            )
            self.dora_kernel_b = self.add_weight(name="dora_kernel_b", shape=(rank,) + out_shape, initializer="zeros")
            self.dora_magnitude = self.add_weight(name="dora_magnitude", shape=out_shape, initializer="ones")

        model_graph.add_variables_after_build(self, create)
        base.trainable = False
        if self.bias is not None:  # frozen too, so a reloaded layer trains the same variables
            self.bias.trainable = False
        self.dora_rank = rank
        self.dora_alpha = float(dora_alpha if dora_alpha is not None else rank)
        self.dora_detach_norm = bool(detach_norm)
        self.dora_enabled = True
        self.reset_dora_magnitude()

    def reset_dora_magnitude(self):
        """Sets `m = ||V||_c` (so `W' = V`): at initialisation `V = W0` and the layer equals the base."""
        norm = self.dora_column_norm(self.dora_direction())
        self.dora_magnitude.assign(ops.reshape(norm, self.dora_magnitude.shape))

    def dora_arithmetic_dtype(self):
        """float64 for float64 variables, else float32 (a float16 norm loses the small columns)."""
        return "float64" if self.variable_dtype == "float64" else "float32"

    def dora_update(self):
        """`(alpha / rank) * A B` in the kernel's layout (arithmetic dtype)."""
        in_axes, out_axes = self.dora_axes()
        a = ops.cast(self.dora_kernel_a, self.dora_arithmetic_dtype())
        b = ops.cast(self.dora_kernel_b, self.dora_arithmetic_dtype())
        delta = ops.tensordot(a, b, axes=1)  # input axes + output axes
        order = in_axes + out_axes
        if order != tuple(range(len(order))):
            delta = ops.transpose(delta, [order.index(i) for i in range(len(order))])
        return (self.dora_alpha / self.dora_rank) * delta

    def dora_direction(self):
        """`V = W0 + (alpha / rank) A B` (arithmetic dtype)."""
        return ops.cast(model_graph.base_weight(self), self.dora_arithmetic_dtype()) + self.dora_update()

    def dora_column_norm(self, value):
        """`||value||_c` over the kernel's input axes, kept as size-1 axes for broadcasting."""
        in_axes, _ = self.dora_axes()
        squared = ops.sum(ops.square(value), axis=in_axes, keepdims=True)
        return ops.sqrt(ops.maximum(squared, _MIN_SQUARED_NORM))

    def dora_kernel(self):
        """`W' = V * (m / ||V||_c)` in the compute dtype (float32 or float64 arithmetic)."""
        direction = self.dora_direction()
        norm = self.dora_column_norm(direction)
        if self.dora_detach_norm:  # the paper's memory saving: no gradient through ||V||_c
            norm = ops.stop_gradient(norm)
        magnitude = ops.reshape(ops.cast(self.dora_magnitude, self.dora_arithmetic_dtype()), norm.shape)
        return ops.cast(direction * (magnitude / norm), self.compute_dtype)

    def dora_config(self, config):
        if self.dora_enabled and not self.dora_merged_save:
            config.update(dora_rank=self.dora_rank, dora_alpha=self.dora_alpha, dora_detach_norm=self.dora_detach_norm)
        return config

    def build_dora(self):
        if self.dora_rank and not self.dora_enabled:
            self.enable_dora(self.dora_rank, self.dora_alpha, self.dora_detach_norm)

    def save_own_variables(self, store):
        if not getattr(self, "dora_enabled", False):
            return super().save_own_variables(store)
        bias = [] if self.bias is None else [self.bias]
        if self.dora_merged_save:  # the plain layer's layout: the nested layer reloads as plain Keras
            values = [self.kernel] + bias
        else:
            values = [model_graph.base_weight(self)] + bias + [getattr(self, n) for n in DORA_VARIABLE_NAMES]
        for index, value in enumerate(values):
            store[str(index)] = keras.ops.convert_to_numpy(value)

    def load_own_variables(self, store):
        if not getattr(self, "dora_enabled", False):
            return super().load_own_variables(store)
        variables = [model_graph.base_weight(self)] + ([] if self.bias is None else [self.bias])
        if not self.dora_merged_save:
            variables += [getattr(self, n) for n in DORA_VARIABLE_NAMES]
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"Layer '{self.name}' expected {len(variables)} saved variables for DoRA. Received: {len(store.keys())}"
            )
        for index, variable in enumerate(variables):
            variable.assign(store[str(index)])
        if self.dora_merged_save:  # as Keras LoRA: a merged kernel, a zero update
            self.dora_kernel_b.assign(ops.zeros(self.dora_kernel_b.shape))
            self.reset_dora_magnitude()
