"""Long self-play training of one agent (resumable), outside the report's ``small`` budget.

    python -m experiments.go_attack.train_agent --game=go --size=7 --workdir=/tmp/go7 \
      --iterations=400 --time_budget_s=1800

The experiment main loads such a checkpoint with ``--config.agent_dir_go=/tmp/go7`` (or trains a
short one itself). Re-running the same command resumes from the latest checkpoint.
"""

from absl import app, flags

from robustml_jax.go_attack import agent

FLAGS = flags.FLAGS
flags.DEFINE_enum("game", "go", ["go", "nogo"], "game")
flags.DEFINE_integer("size", 7, "board size")
flags.DEFINE_string("workdir", None, "checkpoint folder", required=True)
flags.DEFINE_integer("iterations", 400, "self-play + training iterations")
flags.DEFINE_integer("num_games", 32, "parallel self-play games")
flags.DEFINE_integer("max_steps", 48, "moves per iteration (games auto-reset)")
flags.DEFINE_integer("num_simulations", 16, "Gumbel MuZero simulations per move")
flags.DEFINE_integer("channels", 32, "network width")
flags.DEFINE_integer("blocks", 3, "residual blocks")
flags.DEFINE_integer("history_length", 4, "board planes per colour")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate")
flags.DEFINE_float("time_budget_s", None, "stop (and checkpoint) after this many seconds")
flags.DEFINE_integer("seed", 0, "seed")
flags.DEFINE_integer("epochs", 1, "SGD passes over each iteration's positions")
flags.DEFINE_integer("train_batch", 256, "SGD minibatch")
flags.DEFINE_bool("pooled_heads", False, "PVNet's pooled policy/value heads (cannot die)")
flags.DEFINE_integer("max_moves", 0, "Go: score after this many moves (0 = 2*size*size)")


def main(argv):
    del argv
    spec = agent.AgentSpec(
        FLAGS.game,
        FLAGS.size,
        FLAGS.history_length,
        FLAGS.channels,
        FLAGS.blocks,
        max_moves=FLAGS.max_moves,
        pooled_heads=FLAGS.pooled_heads,
    )
    agent.train_agent(
        spec,
        FLAGS.workdir,
        iterations=FLAGS.iterations,
        num_games=FLAGS.num_games,
        max_steps=FLAGS.max_steps,
        num_simulations=FLAGS.num_simulations,
        learning_rate=FLAGS.learning_rate,
        time_budget_s=FLAGS.time_budget_s,
        seed=FLAGS.seed,
        save_every=2,
        epochs=FLAGS.epochs,
        train_batch=FLAGS.train_batch,
    )


if __name__ == "__main__":
    app.run(main)
