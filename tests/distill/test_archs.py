"""The cross-architecture pool (ResNet-18, VGG-11, AlexNet at CPU width) and its evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.distill.configs.default import get_config, validate
from experiments.distill.train import cross_architecture
from robustml_jax import distill
from robustml_jax.core.errors import ConfigError


def _kernels(params):
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [np.shape(a) for p, a in leaves if jax.tree_util.keystr(p).endswith("['kernel']")]


@pytest.mark.parametrize(
    "arch, conv3, conv5, conv1, dense",
    [
        ("resnet18", 17, 0, 3, 1),
        ("vgg11", 8, 0, 0, 1),
        ("alexnet", 3, 2, 0, 1),
        ("convnet", 3, 0, 0, 1),
    ],
)
def test_layer_counts_and_shapes(arch, conv3, conv5, conv1, dense):
    """The reference layer structure: a ResNet-18 has 17 3x3 convs, 3 projection shortcuts and
    one linear layer; VGG-11 has 8 convs; AlexNet 2 5x5 + 3 3x3 convs."""
    for size, ch in ((32, 3), (28, 1)):
        model = distill.make_model(arch, num_classes=7, width=4)
        x = jax.ShapeDtypeStruct((2, size, size, ch), jnp.float32)
        params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]  # no compute
        kernels = _kernels(params)
        assert sum(len(k) == 4 and k[:2] == (3, 3) for k in kernels) == conv3
        assert sum(len(k) == 4 and k[:2] == (5, 5) for k in kernels) == conv5
        assert sum(len(k) == 4 and k[:2] == (1, 1) for k in kernels) == conv1
        assert sum(len(k) == 2 for k in kernels) == dense
        assert jax.eval_shape(model.apply, {"params": params}, x).shape == (2, 7)
    widths = [k[-1] for k in kernels if len(k) == 4]
    expected_max = {"resnet18": 32, "vgg11": 32, "alexnet": 8, "convnet": 4}[arch]
    assert max(widths) == expected_max  # channels scale with width (8w, 8w, 2w, w)


def test_make_model_and_config_reject_unknown_arch():
    with pytest.raises(ValueError, match="arch must be one of"):
        distill.make_model("resnet50", num_classes=10, width=4)
    with pytest.raises(ValueError, match="expects images"):
        distill.make_model("resnet18", num_classes=10, width=4).init(
            jax.random.key(0), jnp.zeros((32, 32, 3))
        )
    config = get_config("smoke")
    config.eval_archs = "convnet,resnet50"
    with pytest.raises(ConfigError, match="eval_archs"):
        validate(config)


@pytest.mark.slow
def test_cross_architecture_learns_and_resumes(tmp_path):
    """Each architecture trained on a separable 2-class set (left half bright or right half
    bright; a brightness offset alone would be removed by instance norm) is far above
    chance on held-out images of the same kind, from the synthetic and the real set alike; a
    second call loads the saved items instead of retraining."""
    config = get_config("smoke")
    config.update(eval_archs="resnet18,vgg11,alexnet", width=4, eval_models=2, eval_epochs=40,
                  dsa_strategy="", eval_batch=256)  # fmt: skip
    rng = np.random.default_rng(0)

    def make(n):
        y = np.arange(n) % 2
        side = np.where(np.arange(32) < 16, 1.0, -1.0)[None, None, :, None]
        x = rng.normal(0, 0.3, (n, 32, 32, 3)) + np.where(y, 1.0, -1.0)[:, None, None, None] * side
        return jnp.asarray(x, jnp.float32), y

    x_syn, y_syn = make(8)
    x_test, y_test = make(200)
    onehot = jax.nn.one_hot(y_syn, 2)
    args = ((x_syn, onehot, 0.03), (x_syn, onehot), (x_test, y_test))
    res = cross_architecture(config, *args, key=jax.random.key(0), directory=tmp_path)
    assert sorted(res) == ["alexnet", "resnet18", "vgg11"]
    for arch, v in res.items():
        assert len(v["syn"]) == 2 and len(v["real"]) == 2
        assert min(v["syn"]) > 0.9, (arch, v)
    config.eval_epochs = 1  # would give other numbers if it retrained
    again = cross_architecture(config, *args, key=jax.random.key(0), directory=tmp_path)
    assert again == res
