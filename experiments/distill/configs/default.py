"""Configs for dataset distillation by trajectory matching (MTT / TESLA).

Launch::

    python -m experiments.distill.main \
      --config=experiments/distill/configs/default.py:small --workdir=/tmp/distill

Variants (hardware, expected runtime, target):

* ``smoke``: MNIST-5k subset, tiny ConvNet, a few iterations; any CPU, < 1 min. Checks the
  pipeline only.
* ``small``: CIFAR-10 (5k-image training subset), ConvNet width 16, 2 experts x 3 epochs,
  IPC 1, 40 iterations; 2 CPU cores, a few minutes. Target: distilled accuracy above the random
  real subset of the same size (the paper's 48.5% / MTT's 46.3% need the full-scale run).
* ``cpu_ipc10`` / ``cpu_ipc1``: the longest CPU runs (full CIFAR-10 train set, ZCA, ConvNet
  width 16, 3 experts x 8 epochs (about 25 min), IPC 10 / 1, 400 / 200 iterations, 2
  evaluation nets x 1000 epochs as in MTT); an idle 2-core CPU, about 75 / 20 min after the
  experts (they share the experts: ``--config.expert_dir``).
  Target (issue 4): at least 15 points above the random real subset of the same IPC; paper:
  TESLA 66.4 / MTT 65.3 (IPC 10), 48.5 / 46.3 (IPC 1) with ConvNet-128 and 5000+ iterations.
* ``full``: the paper's scale on one GPU/TPU: CIFAR-100 IPC 50 (TESLA's README command:
  syn_steps 80, expert_epochs 2, max_start_epoch 40, lr_img 1000, lr_lr 1e-5, batch_syn 125,
  ZCA), ConvNet-128, 100 experts x 50 epochs, 5000 iterations; hours on an A100/H100. Target:
  TESLA 47.9%, MTT 47.7%. ImageNet-1K 64x64 IPC 1 (TESLA: 7.7%) is
  ``--config.dataset=imagenet64 --config.ipc=1 --config.syn_steps=10 --config.expert_epochs=3
  --config.max_start_epoch=10 --config.lr_img=10000 --config.lr_lr=1e-4 --config.batch_syn=100
  --config.label_mode=sla --config.num_experts=50`` (ConvNetD4 is picked for 64x64 images);
  CIFAR-100 / Tiny-ImageNet / ImageNet-64 load through an already prepared TFDS copy.
"""

import ml_collections

from robustml_jax.core.experiment import unknown_config

NAMES = ("smoke", "small", "full", "cpu_ipc10", "cpu_ipc1")


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # data
    c.dataset = "cifar10"
    c.train_examples = 0  # 0 = the whole training split
    c.test_examples = 0
    c.zca = False
    c.zca_fit_examples = 10000
    # model: ConvNet (instance norm, avg-pool); depth 0 = 3 for 32x32, 4 (ConvNetD4) for 64x64
    c.width = 32
    c.depth = 0
    c.norm = "instance"
    c.dsa_strategy = "color_crop_cutout_flip_scale_rotate"
    # experts (MTT buffer.py): plain SGD
    c.expert_dir = ""  # "" = <workdir>/experts
    c.num_experts = 2
    c.expert_train_epochs = 4
    c.lr_teacher = 0.01
    c.expert_batch = 256
    # distillation
    c.ipc = 1
    c.gradient = "tesla"  # unrolled | tesla | remat
    c.label_mode = "hard"  # hard | sla | learned
    c.sla_temperature = 1.0
    c.label_init_scale = 3.0
    c.lr_label = 10.0
    c.syn_steps = 20
    c.expert_epochs = 2
    c.max_start_epoch = 2
    c.batch_syn = 0  # 0 = all synthetic images per step
    c.lr_img = 100.0
    c.lr_lr = 1e-5
    c.syn_momentum = 0.5
    c.iterations = 60
    # evaluation (evaluate_synset)
    c.eval_every = 0  # 0 = only at the end
    c.eval_models = 3
    c.eval_epochs = 300
    c.eval_batch = 256
    # loop
    c.log_every = 10
    c.checkpoint_every = 20
    c.progress = True
    c.num_devices = 0
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0}
    )
    if arg == "smoke":
        c.dataset = "mnist_5k"
        c.train_examples = 1000
        c.test_examples = 500
        c.width = 8
        c.depth = 2
        c.dsa_strategy = "flip"
        c.num_experts = 1
        c.expert_train_epochs = 2
        c.expert_batch = 100
        c.max_start_epoch = 1
        c.expert_epochs = 1
        c.syn_steps = 4
        c.iterations = 4
        c.eval_models = 2
        c.eval_epochs = 10
        c.log_every = 2
        c.checkpoint_every = 2
        c.progress = False
    elif arg == "small":
        c.train_examples = 5000
        c.width = 16
        c.expert_train_epochs = 3
        c.syn_steps = 10
        c.lr_img = 1000.0
        c.lr_lr = 1e-7
        c.iterations = 40
        c.eval_models = 2
        c.eval_epochs = 150
    elif arg in ("cpu_ipc10", "cpu_ipc1"):
        # The longest runs an idle 2-core CPU affords in about an hour (see NOTES.md); both
        # share the experts through --config.expert_dir. MTT's CIFAR-10 settings (ZCA, M = 2,
        # lr_img 1000, IPC 1: N = 50, lr_lr 1e-7) at width 16, 3 experts x 8 epochs.
        c.width = 16
        c.zca = True
        c.num_experts = 3
        c.expert_train_epochs = 8
        c.expert_epochs = 2
        c.lr_img = 1000.0
        c.ipc = 10 if arg == "cpu_ipc10" else 1
        c.max_start_epoch = 6 if arg == "cpu_ipc10" else 2
        c.syn_steps = 20 if arg == "cpu_ipc10" else 50
        c.batch_syn = 20 if arg == "cpu_ipc10" else 0
        c.lr_lr = 1e-5 if arg == "cpu_ipc10" else 1e-7
        c.iterations = 400 if arg == "cpu_ipc10" else 200
        c.eval_every = 200 if arg == "cpu_ipc10" else 0
        c.eval_models = 2
        c.eval_epochs = 1000
        c.checkpoint_every = 10
    elif arg == "full":
        c.dataset = "cifar100"
        c.zca = True
        c.zca_fit_examples = 0
        c.width = 128
        c.num_experts = 100
        c.expert_train_epochs = 50
        c.ipc = 50
        c.syn_steps = 80
        c.expert_epochs = 2
        c.max_start_epoch = 40
        c.batch_syn = 125
        c.lr_img = 1000.0
        c.lr_lr = 1e-5
        c.iterations = 5000
        c.eval_every = 500
        c.eval_models = 5
        c.eval_epochs = 1000
        c.checkpoint_every = 100
    else:
        raise unknown_config(arg, NAMES)
    return c
