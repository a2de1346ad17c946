"""keras_transfer.losses."""

from keras_transfer.losses.nt_xent import NTXent  # noqa: F401
from keras_transfer.losses.nt_xent import nt_xent  # noqa: F401
