"""Model definitions shared by several papers (Flax Linen)."""

from robustml_jax.models.cnn import SmallCNN

__all__ = ["SmallCNN"]
