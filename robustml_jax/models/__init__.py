"""Model definitions shared by several papers (Flax Linen).

Submodules: ``models.t5`` (t5x-compatible T5.1.1 / mT5 with t5x checkpoint I/O and decoding),
``models.bert`` (BERT / the real all-MiniLM-L6-v2 sentence encoder), ``models.cnn``,
``models.convnet``.
"""

from robustml_jax.models import bert, t5
from robustml_jax.models.cnn import SmallCNN
from robustml_jax.models.convnet import ConvNet, ConvNetD4

__all__ = ["ConvNet", "ConvNetD4", "SmallCNN", "bert", "t5"]
