"""DoRAConv2D: a Keras `Conv2D` with DoRA (weight-decomposed low-rank adaptation) on its kernel."""

import keras

from keras_transfer.layers._dora_kernel import DoRAKernelMixin


@keras.saving.register_keras_serializable(package="keras_transfer")
class DoRAConv2D(DoRAKernelMixin, keras.layers.Conv2D):
    """A `keras.layers.Conv2D` whose kernel is DoRA's `m * V / ||V||_c`, `V = W0 + (alpha / r) A B`.

    The frozen pretrained kernel `W0` is split into a magnitude `m` (one per output filter,
    initialised to `||W0||_c`, the norm over the kernel's height, width and input channels,
    axes 0, 1, 2) and a direction `V`, updated by LoRA factors `A` (He-uniform) and `B`
    (zeros), so the layer equals the plain `Conv2D` when DoRA is enabled. Only `A`, `B` and
    `m` train (kernel and bias are frozen). The gradient flows through `||V||_c` (the
    exact DoRA gradient); `dora_detach_norm=True` treats the norm as a constant, the
    paper's memory saving.

    Keras has LoRA (`enable_lora`) but no DoRA; `keras_transfer.recipes.add_adapters(...,
    kind="dora")` swaps this class in and `keras_transfer.recipes.merge_dora` folds it back
    into a plain `Conv2D`.

    Args:
        filters: as for `keras.layers.Conv2D`.
        kernel_size: as for `keras.layers.Conv2D`.
        dora_rank: int, the rank `r` of `A B` (DoRA is enabled when the layer is built), or
            None (enable it later with `enable_dora`, e.g. after copying pretrained weights).
        dora_alpha: float, the scale numerator of `A B` (default: `dora_rank`).
        dora_detach_norm: bool, no gradient through `||V||_c` (Liu et al.'s memory saving).
        *args: the other positional arguments of `keras.layers.Conv2D`.
        **kwargs: its other keyword arguments.

    Call arguments:
        inputs: as for `keras.layers.Conv2D`.

    Raises:
        ValueError: when DoRA is enabled with a rank outside `[1, min(input size, output
            size)]` of the kernel, or on a layer with LoRA enabled.

    Reference:
        Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024.

    Example:

    >>> layer = keras_transfer.layers.DoRAConv2D(4, kernel_size=3, dora_rank=2)
    >>> y = layer(np.ones((1, 5, 5, 3), "float32"))
    >>> [(w.name, tuple(w.shape)) for w in layer.trainable_weights]
    [('dora_kernel_a', (3, 3, 3, 2)), ('dora_kernel_b', (2, 4)), ('dora_magnitude', (4,))]
    """

    def __init__(self, filters, kernel_size, *args, dora_rank=None, dora_alpha=None, dora_detach_norm=False, **kwargs):
        super().__init__(filters, kernel_size, *args, **kwargs)
        self.init_dora(dora_rank, dora_alpha, dora_detach_norm)

    def dora_axes(self):
        """Which kernel axes DoRA norms over.

        Returns:
            `(input_axes, output_axes)`: tuples of kernel axis indices; `||V||_c` sums over the
            input axes and the magnitude has the output axes' shape.
        """
        return (0, 1, 2), (3,)
