"""Orchestration of the GoAttack experiment: ``train_and_evaluate(config, workdir, runtime)``.

1. Agents (per game): self-play training into ``workdir/agents/<game>`` (orbax, resumable);
   a folder with ``trained.json`` is a finished agent and is loaded as is (a cached checkpoint).
2. Strength: win rate vs a uniformly random player (PV-NN and MCTS); Go vs GNU Go over GTP.
3. Natural games: the agent's own self-play games (MCTS with Gumbel noise).
4. The attack for every (game, placement, target, attack type): scan each game from the end,
   one stone then two, stop at the first verified success. Each (setting, game) is a work item.
5. Search-space reduction: examiner evaluations with the reduction vs brute force (one stone,
   same states) on ``reduction_games`` games.
6. Gallery (PNG + SGF of verified examples), the success-rate table and plot, results.json.
"""

# ruff: noqa: B023  (work-item closures are called at once, inside their loop iteration)
from __future__ import annotations

import json
import pathlib
import time

import jax
import numpy as np
from absl import logging

from robustml_jax.core import plotting
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.workitems import WorkItems
from robustml_jax.go_attack import agent, attack, gtp, records


def _json_items(directory: pathlib.Path) -> WorkItems:
    def save(folder, value):
        folder.mkdir(parents=True)
        (folder / "item.json").write_text(json.dumps(value))

    return WorkItems(directory, save=save, load=lambda f: json.loads((f / "item.json").read_text()))


def spec_for(config, game: str) -> agent.AgentSpec:
    return agent.AgentSpec(
        game,
        config.size,
        config.history_length,
        config.channels,
        config.blocks,
        config.komi,
        config.go_max_moves if game == "go" else 0,
        game in config.pooled_heads,
    )


def get_agent(config, workdir: pathlib.Path, game: str, log=logging.info):
    """Trains (resumably) or loads the agent for ``game``; returns (spec, params, info)."""
    spec = spec_for(config, game)
    d = workdir / "agents" / game
    done = d / "trained.json"
    if done.is_file():
        spec_disk, ts = agent.load_agent(d, game=game, size=config.size)
        if spec_disk != spec:
            raise ValueError(f"cached agent in {d} is {spec_disk}, the config asks for {spec}")
        return spec, ts.params, json.loads(done.read_text())
    t0 = time.time()
    ts, info = agent.train_agent(
        spec,
        d,
        iterations=config.train_iterations,
        num_games=config.train_games,
        max_steps=config.train_max_steps,
        num_simulations=config.train_simulations,
        learning_rate=config.learning_rate,
        seed=config.seed,
        time_budget_s=config.train_time_budget_s or None,
        save_every=2,
        log=log,
        epochs=config.train_epochs,
        train_batch=config.train_batch,
    )
    info = {
        "iterations": info["iterations"],
        "seconds_this_run": time.time() - t0,
        "last": info["history"][-1] if info["history"] else {},
    }
    done.write_text(json.dumps(info))
    return spec, ts.params, info


def _strength(config, spec, params, key) -> dict:
    out = {
        "vs_random_pvnn": agent.evaluate_vs_random(spec, params, key, num_games=config.eval_games),
        "vs_random_mcts": agent.evaluate_vs_random(
            spec,
            params,
            jax.random.fold_in(key, 1),
            num_games=config.eval_games,
            num_simulations=config.eval_simulations,
        ),
    }
    if spec.game == "go" and config.gnugo_games > 0:
        if gtp.GnuGo.available():
            r = gtp.play_vs_gnugo(
                spec,
                params,
                jax.random.fold_in(key, 2),
                num_games=config.gnugo_games,
                num_simulations=config.eval_simulations,
                level=config.gnugo_level,
            )
            r.pop("records")
            out["vs_gnugo"] = r
        else:
            out["vs_gnugo"] = {"skipped": gtp.MISSING}
    return out


def _cfg(config, **kw) -> attack.AttackConfig:
    base = dict(
        eta_adv=config.eta_adv,
        eta_eq=config.eta_eq,
        eta_correct=config.eta_correct,
        max_pairs=config.max_pairs,
        max_verify=config.max_verify,
        min_ply=config.min_ply,
        own_threshold=config.own_threshold,
    )
    return attack.AttackConfig(**{**base, **kw})


def attack_settings(config, game: str | None = None):
    """(target sims, eta_adv, placement, attack) in run order: targets outermost (a partial run
    has whole columns), the paper's ``eta_adv`` then the ``eta_adv_extra`` ones; then, for
    ``game``, the ``extra_targets`` ((game, attack, sims) triples measured only there)."""
    extra = [float(e) for e in config.get("eta_adv_extra", ()) if float(e) != config.eta_adv]
    etas = (float(config.eta_adv), *extra)
    columns = [(sims, tuple(config.attacks)) for sims in config.target_sims]
    columns += [
        (sims, (att_type,))
        for g, att_type, sims in config.get("extra_targets", ())
        if g == game and att_type in config.attacks and sims not in config.target_sims
    ]
    for sims, att_types in columns:
        for eta in etas:
            for placement in config.placements:
                for att_type in att_types:
                    yield sims, eta, placement, att_type


def value_scale(config, game: str) -> float:
    """The attack's win-rate stretch for ``game`` (``config.value_scale``: "go:1,nogo:2.5")."""
    table = dict(kv.split(":") for kv in str(config.value_scale).split(",") if kv)
    return float(table.get(game, 1.0))


def _gallery(config, spec, att, moves, ex, name, folder: pathlib.Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    g = att.game
    st, _, _ = att.states([ex["sequence"]])
    board = np.asarray(g.board(st))[0]
    added = [p for p in ex["perturbation"] if p != g.null_move]
    mv = ex["target_move"] if ex["target_move"] < g.num_points else None
    title = (
        f"{name}: target move {records.point_to_gtp(mv, spec.size)}, "
        f"examiner V={ex['examiner_V']:.2f}"
    )
    records.render_png(board, spec.size, folder / f"{name}.png", added=added, move=mv, title=title)
    seq = ex["sequence"] + [ex["target_move"]]
    rec = records.Record(
        spec.size,
        [("b" if i % 2 == 0 else "w", None if a == g.null_move else a) for i, a in enumerate(seq)],
        spec.komi,
    )
    comment = json.dumps({k: v for k, v in ex.items() if k != "sequence"})
    if spec.game == "go":
        (folder / f"{name}.sgf").write_bytes(records.to_sgf(rec, comment=comment))
    else:  # SGF has no NoGo game type here; the moves are still a Go-coordinate record
        (folder / f"{name}.sgf").write_bytes(
            records.to_sgf(rec, comment=comment, extra={"GN": "NoGo"})
        )
    return {"png": f"gallery/{name}.png", "sgf": f"gallery/{name}.sgf"}


def _plot(table, path):
    """Success rate against target simulations: one panel per (game, placement), one colour per
    attack setting, solid = two stones, dashed = one stone; every setting that never succeeds
    is left out of the lines and named in the panel's title."""
    games = sorted({k[0] for k in table})
    placements = ("appended", "inserted")
    fig, axes = plotting.subplots(
        len(games), 2, figsize=(10, 3.6 * len(games)), squeeze=False, layout="constrained"
    )
    settings = sorted({k[2] for k in table})
    colours = {a: f"C{i % 10}" for i, a in enumerate(settings)}
    for gi, game in enumerate(games):
        for ax, placement in zip(axes[gi], placements, strict=True):
            zero = []
            for (g, pl, att_type, stones), row in sorted(table.items()):
                if g != game or pl != placement:
                    continue
                sims = sorted(row)
                if not any(row[s] for s in sims):
                    zero.append(f"{att_type} {stones}")
                    continue
                ax.plot(
                    [max(s, 0.5) for s in sims],
                    [row[s] for s in sims],
                    marker="o",
                    color=colours[att_type],
                    ls="-" if stones == 2 else "--",
                    label=f"{att_type}, {stones} stone{'s' * (stones > 1)}",
                )
            ax.set_xscale("log")
            ax.set_xlabel("target simulations (0.5 = PV-NN)")
            ax.set_ylabel("success rate (per game)")
            title = f"{game}, stones {placement}"
            if zero:
                title += f"\nalways 0: {len(zero)} of {len(zero) + len(ax.lines)} lines"
            ax.set_title(title, fontsize=9)
            ax.set_ylim(-0.05, 1.05)
            if ax.lines:
                ax.legend(fontsize=7)
    plotting.save(fig, path)
    return fig


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    del runtime
    workdir = pathlib.Path(workdir)
    root = jax.random.key(config.seed)
    items = _json_items(workdir / "items")
    t_start = time.time()
    results: dict = {"agents": {}, "strength": {}, "attack": {}, "reduction": {}, "gallery": []}
    table: dict = {}
    # agents and their strength first (for every game), then the attacks
    agents = {}
    for gi, game in enumerate(config.games):
        spec, params, info = get_agent(config, workdir, game)
        agents[game] = (spec, params)
        results["agents"][game] = {"spec": spec._asdict(), **info}
        results["strength"][game] = items.get(
            f"strength_{game}",
            lambda: _strength(config, spec, params, jax.random.fold_in(root, gi)),
        )
        logging.info("%s strength: %s", game, results["strength"][game])
    for gi, game in enumerate(config.games):
        spec, params = agents[game]
        games = items.get(
            f"games_{game}",
            lambda: attack.selfplay_games(
                spec,
                params,
                jax.random.fold_in(root, 100 + gi),
                num_games=config.num_attack_games,
                num_simulations=config.selfplay_simulations,
            ),
        )
        # cells measured on more games than num_attack_games (``more_games``): each extra game
        # is its own item (keyed by its index), so raising the count later keeps finished work
        n_games = {
            (att_type, float(eta)): int(n)
            for g, att_type, eta, n in config.get("more_games", ())
            if g == game
        }
        for j in range(len(games), max([len(games), *n_games.values()])):
            games = games + [
                items.get(
                    f"games_{game}_g{j:02d}",
                    lambda j=j: attack.selfplay_games(
                        spec,
                        params,
                        jax.random.fold_in(jax.random.fold_in(root, 200 + gi), j),
                        num_games=1,
                        num_simulations=config.selfplay_simulations,
                    )[0],
                )
            ]
        att = attack.Attacker(
            spec,
            params,
            examiner_sims=config.examiner_sims,
            value_scale=value_scale(config, game),
        )
        # a stronger search of the same network that re-checks every found example
        strong_sims = int(config.get("strong_examiner_sims", 0))
        att_strong = (
            attack.Attacker(
                spec, params, examiner_sims=strong_sims, value_scale=value_scale(config, game)
            )
            if strong_sims
            else None
        )
        infos: dict = {}
        tcache: dict = {}
        for sims, eta, placement, att_type in attack_settings(config, game):
            cfg = _cfg(
                config,
                attack=att_type,
                stones=2,
                target_sims=int(sims),
                placement=placement,
                eta_adv=eta,
            )
            tag = "" if eta == config.eta_adv else f"_eta{eta:g}"
            rows = []
            cell_games = games[: n_games.get((att_type, float(eta)), config.num_attack_games)]
            for j, moves in enumerate(cell_games):
                name = f"{game}_{placement}_t{sims}_{att_type}{tag}_g{j:02d}"

                def compute(j=j, moves=moves, cfg=cfg, name=name):
                    key = jax.random.fold_in(root, 10_000 + j)
                    if j not in infos:
                        lo = max(cfg.min_ply, len(moves) // 10)
                        ks = list(range(len(moves) - 1, lo - 1, -1))
                        infos[j] = att.state_info(moves, ks, jax.random.fold_in(key, 1))
                    r = attack.attack_game(att, moves, cfg, key, infos[j], tcache.setdefault(j, {}))
                    if r["example"] is not None:
                        r["gallery"] = _gallery(
                            config,
                            spec,
                            att,
                            moves,
                            r["example"],
                            name,
                            workdir / "gallery",
                        )
                    return r

                r = items.get(name, compute)
                rows.append(r)
                if config.progress:
                    logging.info(
                        "%s: success1=%s success2=%s mcts_evals=%d",
                        name,
                        r["success_1"],
                        r["success_2"],
                        r["mcts_evals"],
                    )
            key = f"{game}|{placement}|{att_type}|{sims}" + tag.replace("_", "|")

            # each verified example re-checked under fresh examiner searches: the attack's own
            # examiner (search noise), then a stronger search of it (strong_examiner_sims)
            def recheck(checker, suffix, salt, reps, cell_games=cell_games, rows=rows, cfg=cfg):
                out = []
                for j, (moves, r) in enumerate(zip(cell_games, rows, strict=True)):
                    if r["example"] is None:
                        continue
                    name = f"{game}_{placement}_t{sims}_{att_type}{tag}_g{j:02d}"
                    out.append(
                        items.get(
                            f"{name}_{suffix}",
                            lambda moves=moves, r=r, j=j: attack.reverify(
                                checker,
                                moves,
                                r["example"],
                                cfg,
                                jax.random.fold_in(root, salt + j),
                                repeats=reps,
                            ),
                        )
                    )
                return out

            reps = int(config.reverify_repeats)
            rever = recheck(att, f"reverify{reps}", 30_000, reps) if reps else []
            reps = int(config.get("strong_examiner_repeats", 0))
            strong = (
                recheck(att_strong, f"strong{strong_sims}x{reps}", 40_000, reps)
                if att_strong is not None
                else []
            )
            n = len(rows)
            k1 = int(sum(r["success_1"] for r in rows))
            k2 = int(sum(r["success_2"] for r in rows))
            funnel: dict = {}
            for r in rows:
                for f, v in r.get("funnel", {}).items():
                    funnel[f] = funnel.get(f, 0) + int(v)
            results["attack"][key] = {
                "games": n,
                "success_1": k1 / n if n else 0.0,
                "success_2": k2 / n if n else 0.0,
                "wins_1": k1,
                "wins_2": k2,
                "ci95_1": agent.wilson_interval(k1, n),
                "ci95_2": agent.wilson_interval(k2, n),
                "target_passes": int(
                    sum(
                        r["example"] is not None
                        and r["example"]["target_move"] == att.game.null_move
                        and game == "go"
                        for r in rows
                    )
                ),
                "funnel": funnel,
                "max_gap": max([float(r.get("max_gap", -1.0)) for r in rows] + [-1.0]),
                "games_with_precondition": int(sum(r["states_precond"] > 0 for r in rows)),
                "found_unverified": int(sum(r["unverified"] for r in rows)),
                "examiner_mcts_evals": int(sum(r["mcts_evals"] for r in rows)),
                "examiner_nn_evals": int(sum(r["nn_evals"] for r in rows)),
                # per example: share of fresh examiner draws on which the criterion holds
                "reverify_rates": [v["rate"] for v in rever],
                "robust_examples": int(sum(v["rate"] >= 0.5 for v in rever)),
                # the same under the stronger examiner (empty when strong_examiner_sims = 0)
                "strong_rates": [v["rate"] for v in strong],
                "strong_robust_examples": int(sum(v["rate"] >= 0.5 for v in strong)),
            }
            for stones in (1, 2):
                table.setdefault((game, placement, att_type + tag, stones), {})[int(sims)] = (
                    results["attack"][key][f"success_{stones}"]
                )
            for r in rows:
                if r.get("gallery") and len(results["gallery"]) < config.gallery_max:
                    results["gallery"].append(
                        {
                            **r["gallery"],
                            "setting": key,
                            "example": {k: v for k, v in r["example"].items() if k != "sequence"},
                        }
                    )
        # search-space reduction vs brute force (one stone, same states, same setting)
        if game not in config.get("reduction_for", config.games):
            continue
        red = {"setting": dict(config.reduction_setting)}
        for mode in ("reduced", "brute_force"):
            cfg = _cfg(
                config,
                stones=1,
                reduce=mode == "reduced",
                **dict(config.reduction_setting),
            )
            rows = []
            for j, moves in enumerate(games[: config.reduction_games]):

                def compute(j=j, moves=moves, cfg=cfg):
                    key = jax.random.fold_in(root, 20_000 + j)
                    # info=None: the natural-state searches are counted in both modes
                    return attack.attack_game(att, moves, cfg, key, None)

                rows.append(items.get(f"{game}_reduction_{mode}_g{j:02d}", compute))
            # the natural-state searches (2 per scanned state, shared by both modes)
            shared = [
                2 * (len(m) - max(cfg.min_ply, len(m) // 10))
                for m in games[: config.reduction_games]
            ]
            cand = [int(r["mcts_evals"]) - o for r, o in zip(rows, shared, strict=True)]
            red[mode] = {
                "candidate_mcts_evals": int(sum(cand)),
                "per_game_candidate_mcts_evals": cand,
                "natural_state_mcts_evals": int(sum(shared)),
                "examiner_mcts_evals": int(sum(r["mcts_evals"] for r in rows)),
                "examiner_nn_evals": int(sum(r["nn_evals"] for r in rows)),
                "per_game_mcts_evals": [int(r["mcts_evals"]) for r in rows],
                "per_game_success": [bool(r["success_1"]) for r in rows],
                "successes": int(sum(r["success_1"] for r in rows)),
                "games": len(rows),
            }
        red["factor"] = red["brute_force"]["examiner_mcts_evals"] / max(
            red["reduced"]["examiner_mcts_evals"], 1
        )
        red["candidate_factor"] = red["brute_force"]["candidate_mcts_evals"] / max(
            red["reduced"]["candidate_mcts_evals"], 1
        )
        results["reduction"][game] = red
    plot = _plot(table, workdir / "success_rate.png")
    del plot
    results["table"] = {
        "|".join(map(str, k)): {str(s): v for s, v in row.items()} for k, row in table.items()
    }
    results["plots"] = ["success_rate.png"] + [g["png"] for g in results["gallery"]]
    results["seconds"] = time.time() - t_start
    return results
