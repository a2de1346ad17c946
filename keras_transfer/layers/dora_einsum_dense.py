"""DoRAEinsumDense: a Keras `EinsumDense` with DoRA (weight-decomposed low-rank adaptation) on its kernel."""

import keras

from keras_transfer.layers._dora_kernel import DoRAKernelMixin
from keras_transfer.layers._dora_kernel import einsum_kernel_axes
from keras_transfer.utils import model_graph


@keras.saving.register_keras_serializable(package="keras_transfer")
class DoRAEinsumDense(DoRAKernelMixin, keras.layers.EinsumDense):
    """A `keras.layers.EinsumDense` whose kernel is DoRA's `m * V / ||V||_c`, `V = W0 + (alpha / r) A B`.

    The frozen pretrained kernel `W0` is split into a magnitude `m` (one per output element of the kernel,
    initialised to `||W0||_c`, the norm over the kernel axes contracted with the input) and a direction `V`, updated by
    LoRA factors `A` (He-uniform) and `B` (zeros), so the layer equals the plain `EinsumDense`
    when DoRA is enabled. Only `A`, `B` and `m` train (kernel and bias are frozen).
    The gradient flows through `||V||_c` (the exact DoRA gradient); `dora_detach_norm=True`
    treats the norm as a constant, the paper's memory saving.

    Kernel axes: the letters of the kernel contracted with the input (in the input spec,
    not in the output) are the input axes, normed over; every other kernel axis is an output
    axis and `m` has their shape. A `MultiHeadAttention` query / key / value projection
    `"abc,cde->abde"` (kernel `(dim, heads, head_dim)`) has one magnitude per
    `(head, head_dim)` and `A: (dim, r)`, `B: (r, heads, head_dim)`; its output projection
    `"abcd,cde->abe"` (kernel `(heads, head_dim, dim)`) one per output feature, with
    `A: (heads, head_dim, r)`, `B: (r, dim)`. `A B` is a true rank-`r` map from the
    flattened input axes to the flattened output axes.

    Keras has LoRA (`enable_lora`) but no DoRA; `keras_transfer.recipes.add_adapters(...,
    kind="dora")` swaps this class in and `keras_transfer.recipes.merge_dora` folds it back
    into a plain `EinsumDense`.

    Args:
        equation: as for `keras.layers.EinsumDense`.
        output_shape: as for `keras.layers.EinsumDense`.
        dora_rank: int, the rank `r` of `A B` (DoRA is enabled when the layer is built), or
            None (enable it later with `enable_dora`, e.g. after copying pretrained weights).
        dora_alpha: float, the scale numerator of `A B` (default: `dora_rank`).
        dora_detach_norm: bool, no gradient through `||V||_c` (Liu et al.'s memory saving).
        *args: the other positional arguments of `keras.layers.EinsumDense`.
        **kwargs: its other keyword arguments.

    Call arguments:
        inputs: as for `keras.layers.EinsumDense`.
        training: unused (Keras's signature).

    Raises:
        ValueError: when DoRA is enabled with a rank outside `[1, min(input size, output
            size)]` of the kernel, or on a layer with LoRA enabled.

    Reference:
        Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024.

    Example:

    >>> layer = keras_transfer.layers.DoRAEinsumDense("abc,cde->abde", output_shape=(None, 2, 4), dora_rank=2)
    >>> y = layer(np.ones((1, 5, 8), "float32"))
    >>> tuple(y.shape)
    (1, 5, 2, 4)
    >>> [(w.name, tuple(w.shape)) for w in layer.trainable_weights if "dora" in w.name]
    [('dora_kernel_a', (8, 2)), ('dora_kernel_b', (2, 2, 4)), ('dora_magnitude', (2, 4))]
    """

    def __init__(
        self, equation, output_shape, *args, dora_rank=None, dora_alpha=None, dora_detach_norm=False, **kwargs
    ):
        super().__init__(equation, output_shape, *args, **kwargs)
        self.init_dora(dora_rank, dora_alpha, dora_detach_norm)

    def dora_axes(self):
        """Which kernel axes DoRA norms over.

        Returns:
            `(input_axes, output_axes)`: tuples of kernel axis indices; `||V||_c` sums over the
            input axes and the magnitude has the output axes' shape.
        """
        return einsum_kernel_axes(self.equation, len(model_graph.base_weight(self).shape))
