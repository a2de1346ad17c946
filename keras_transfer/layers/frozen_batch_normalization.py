"""BatchNormalization with frozen statistics and a trainable affine part (gamma, beta)."""

import keras


@keras.saving.register_keras_serializable(package="keras_transfer")
class FrozenBatchNormalization(keras.layers.BatchNormalization):
    """A `BatchNormalization` that always normalises with its moving statistics.

    `y = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta`, whatever
    `training` says; the moving statistics are never updated, while `gamma` and `beta`
    stay trainable (when the layer is).

    Why a layer: Keras 3 gives a BatchNormalization only two behaviours. A frozen one
    (`trainable=False`) runs in inference mode but then `gamma`/`beta` cannot train; a
    trainable one runs in training mode inside `fit` (batch statistics, moving averages
    updated), even when the graph was built with `backbone(x, training=False)`, since
    Keras 3 passes `fit`'s `training=True` through. On few-shot data the batch
    statistics of 25 images are noise, and after `fit` the moving statistics of the
    pretraining are overwritten. Parameter-efficient transfer ("train only the adapters,
    the normalisation parameters and the head") and fine-tuning with "statistics frozen,
    affine trained" need the third behaviour, which this layer provides. At inference it
    is exactly a `BatchNormalization` with the same weights (`fold_adapters` turns it
    back into one).

    Build one from an existing layer with
    `FrozenBatchNormalization.from_batch_normalization(bn)`.

    Args:
        *args: positional arguments of `keras.layers.BatchNormalization`
            (`axis`, `momentum`, `epsilon`, ...).
        renorm: must be False: batch renormalisation corrects batch statistics,
            which this layer never uses.
        **kwargs: keyword arguments of `keras.layers.BatchNormalization`.

    Call arguments:
        inputs: the input tensor.
        training: ignored: the layer always runs in inference mode.
        mask: passed on to `BatchNormalization`.

    Raises:
        ValueError: if `renorm` is True.

    Reference:
        Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network
        Training by Reducing Internal Covariate Shift", ICML 2015.

    Example:

    >>> bn = keras.layers.BatchNormalization(epsilon=1e-3)
    >>> bn.build((None, 3))
    >>> frozen = keras_transfer.layers.FrozenBatchNormalization.from_batch_normalization(bn)
    >>> x = np.array([[1.0, 2.0, 3.0]], "float32")
    >>> np.round(frozen(x, training=True).numpy(), 3)  # moving mean 0 and variance 1
    array([[1.   , 1.999, 2.999]], dtype=float32)
    >>> len(frozen.trainable_weights), len(frozen.non_trainable_weights)
    (2, 2)
    """

    def __init__(self, *args, renorm=False, **kwargs):
        if renorm:
            raise ValueError(
                "`renorm` must be False for FrozenBatchNormalization: its statistics are frozen, "
                "so there is no batch statistic for batch renormalisation to correct. "
                f"Received: renorm={renorm!r}"
            )
        # `renorm` is not passed on: Keras < 3.14 (e.g. the Kaggle image's 3.13) has no such argument.
        super().__init__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        # Inference mode always: moving statistics used, never assigned. Gradients still
        # reach gamma and beta through the affine part.
        return super().call(inputs, training=False, mask=mask)

    def get_config(self):
        # Exactly BatchNormalization's arguments (renorm always False): the config also
        # rebuilds a plain BatchNormalization, which `fold_adapters` relies on.
        return super().get_config()

    @classmethod
    def from_batch_normalization(cls, layer, name=None):
        """A `FrozenBatchNormalization` with `layer`'s configuration and weights.

        The copy keeps the layer's name (or `name`), its `trainable` flag and dtype
        policy; a built layer's `gamma`, `beta`, `moving_mean` and `moving_variance`
        are copied (a renormalising layer's extra variables are dropped: at
        inference only these four count).

        Args:
            layer: a `keras.layers.BatchNormalization`.
            name: name of the new layer, or None to keep `layer.name`.

        Returns:
            A new `FrozenBatchNormalization`, built when `layer` is built.

        Raises:
            ValueError: if `layer` is not a `keras.layers.BatchNormalization`.
        """
        if not isinstance(layer, keras.layers.BatchNormalization):
            raise ValueError(
                "`layer` must be a keras.layers.BatchNormalization. "
                f"Received: layer={layer!r} of type {type(layer).__name__}"
            )
        config = layer.get_config()
        for key in ("renorm", "renorm_clipping", "renorm_momentum"):
            config.pop(key, None)
        if name is not None:
            config["name"] = name
        new = cls.from_config(config)
        if layer.built:
            spec = layer.input_spec
            ndim = getattr(spec, "ndim", None) if spec is not None else None
            if ndim is None:
                ndim = max(2, layer.axis + 1 if layer.axis >= 0 else -layer.axis)
            shape = [None] * ndim
            shape[layer.axis] = int(layer.moving_mean.shape[0])
            new.build(tuple(shape))
            new.trainable = layer.trainable
            names = ["moving_mean", "moving_variance"]
            names += ["gamma"] if layer.scale else []
            names += ["beta"] if layer.center else []
            for attr in names:
                getattr(new, attr).assign(keras.ops.convert_to_numpy(getattr(layer, attr)))
        return new
