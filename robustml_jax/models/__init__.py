"""Model definitions shared by several papers (Flax Linen)."""

from robustml_jax.models import t5  # noqa: F401  (submodule export: models.t5)
from robustml_jax.models.cnn import SmallCNN
from robustml_jax.models.convnet import ConvNet, ConvNetD4

__all__ = ["ConvNet", "ConvNetD4", "SmallCNN"]
