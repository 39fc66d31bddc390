"""Model definitions shared by several papers (Flax Linen)."""

from robustml_jax.models import bert as bert
from robustml_jax.models.cnn import SmallCNN
from robustml_jax.models.convnet import ConvNet, ConvNetD4

__all__ = ["ConvNet", "ConvNetD4", "SmallCNN"]
