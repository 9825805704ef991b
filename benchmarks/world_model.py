"""World models (issue 15): sample efficiency of SAC, `svg` and `mbpo` on Pendulum, and the actor-gradient
variance of the pathwise and score-function estimators per imagination horizon.

    .venv/bin/python benchmarks/world_model.py                      # the full protocol (10 seeds, 20k steps)
    .venv/bin/python benchmarks/world_model.py --seeds 2 --total-steps 4000 --agents sac,svg,mbpo
    .venv/bin/python benchmarks/world_model.py --study variance --variance-steps 3000
    .venv/bin/python benchmarks/world_model.py --study mujoco --env Hopper-v5 --total-steps 20000 --seeds 2
    .venv/bin/python benchmarks/world_model.py --agents mbpo --seed-group 0:5 --json A.json   # seeds 0-4 of 10
    .venv/bin/python benchmarks/world_model.py --agents svg --checkpoint ck/   # rerun to continue exactly
    .venv/bin/python benchmarks/world_model.py --table FILE [FILE ...]  # the tables of --json files, seed
                                                                    # groups of one agent merged

Learning (`--study learning`): every agent in reparam's compiled loop on gymnax Pendulum-v1 (the
dynamics of Gymnasium's Pendulum-v1), all seeds vmapped in one program, `--total-steps` env steps per
seed, evaluated every `--eval-every` (200) steps by the mean deterministic return of `--eval-episodes`
(10) episodes (the loop's in-loop evaluation, fixed keys per chunk). *Steps to threshold*: the first
evaluation step at which the return is >= -200 there and at the next evaluation (warm-up included);
median and IQR over seeds, a seed that never gets there counts as not reached. *Final return*: the
mean over seeds at the last evaluation. *Wall*: the compiling first chunk and the rest, separately.
Any non-finite metric of any seed is counted as a NaN run. Settings per agent: `SETTINGS`. Seed `i` of
`--seeds` always trains from the same key (the i-th of `split(key(0), --seeds)`), so a protocol too long
for one sitting runs as seed groups (`--seed-group START:STOP`, each its own program and JSON) that
`--table` merges into the rows the single run would give (per-seed numbers may differ in the last bits:
a different vmap width can change XLA's summation order). `--checkpoint DIR` writes each agent's carry
and curves to `DIR/<agent>` after every evaluation; the same command run again continues from there
and gives the uninterrupted run's numbers (checked: a 2-seed svg run stopped after 3 of 5 evaluations
and resumed matched the uninterrupted run's returns bit for bit).

Variance (`--study variance`): a `svg` agent trained for `--variance-steps` steps (seed 0); at 256 fixed
replay states with its critic, model and actor fixed, `--repeats` independent estimates of the actor
gradient of the H-step imagined objective for H in `--horizons` (1, 3, 5, 10), pathwise and score
function (baseline: the critic's soft value), and SAC's own actor gradient (H = 0: `sac.actor_loss`
vs `sac.score_actor_loss`), summarised by the estimators lab (`reparam.estimators.variance.summarize`)
against the mean of the pathwise estimates: the total variance (sum over all actor weights), and the
median signal-to-noise ratio `|mean| / std` over weights.

MuJoCo (`--study mujoco`): the host loop on a Gymnasium id (`--env`, e.g. Hopper-v5, HalfCheetah-v5),
run through the commands users run: `reparam sac` and `reparam world-model --agent mbpo` with the
flags in `MUJOCO_FLAGS`, the same seeds, budget, warm-up (the commands' 1,000 steps) and evaluation
(`--mujoco-eval-every` steps, `--mujoco-eval-episodes` deterministic episodes); the mbpo run draws the
SAC run's curve beside its own. Reported: the mean return per evaluation, per agent, and the wall time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import common
from reparam.commands.sac import returns_by_step
from reparam.estimators.variance import summarize
from reparam.rl.agent import sac_agent
from reparam.rl.compiled import RunSpec, make_train
from reparam.rl.dynamics import DynamicsConfig, termination_for
from reparam.rl.model_based import ModelBasedConfig, ensemble_of, model_based_agent, model_step_fn, svg_objective
from reparam.rl.replay import sample
from reparam.rl.sac import SACConfig, actor_loss, init_sac, score_actor_loss
from reparam.runs import load_serialised, read_json, read_rows, serialise, write_atomic, write_json

ENV = "gymnax:Pendulum-v1"
THRESHOLD = -200.0
SETTINGS = {
    # our SAC as `reparam sac` runs it: the paper's defaults, 1,000 warm-up steps, 1 gradient step per env step
    "sac": SACConfig(),
    # the same SAC with the likelihood-ratio actor gradient (baseline: 4 other actions), same critic
    "sac-score": SACConfig(actor_gradient="score"),
    # svg: SAC's networks and optimizers, 250 warm-up steps; actor through 3 imagined steps of a 5-member
    # ensemble (3 elites)
    "svg": ModelBasedConfig(sac=SACConfig(learning_starts=250), dynamics=DynamicsConfig(), horizon=3),
    # mbpo: 250 warm-up steps, 256 one-step model rollouts per env step, 5 SAC gradient steps per env step,
    # 5% real data
    "mbpo": ModelBasedConfig(sac=SACConfig(learning_starts=250, gradient_steps=5), horizon=1),
}


def make_agent(name: str):
    """The agent called `name` with its `SETTINGS`."""
    if name.startswith("sac"):
        return sac_agent(SETTINGS[name])
    return model_based_agent(name, SETTINGS[name], termination_for(ENV))


def steps_to_threshold(steps: np.ndarray, returns: np.ndarray) -> float:
    """The first step whose return and the next evaluation's are >= THRESHOLD (inf if none)."""
    ok = returns >= THRESHOLD
    for i in range(len(steps) - 1):
        if ok[i] and ok[i + 1]:
            return float(steps[i])
    return float("inf")


def learning_run(
    name: str,
    seeds: int,
    total_steps: int,
    eval_every: int,
    eval_episodes: int,
    group: range | None = None,
    checkpoint: Path | None = None,
):
    """One agent, seeds `group` (default all) of `seeds` vmapped: the per-seed curves, the timings and the
    final carry. With `checkpoint` (a folder), the carry and the curves so far are written there
    atomically after every evaluation, and a run with the same settings continues from them exactly (each
    chunk's keys depend only on the seed and the chunk index)."""
    run = make_train(make_agent(name), ENV, RunSpec(total_steps, eval_every, eval_episodes))
    group = range(seeds) if group is None else group
    keys = jax.random.split(jax.random.key(0), seeds)[group.start : group.stop]
    identity = dict(agent=name, seeds=seeds, group=[group.start, group.stop], total_steps=total_steps,
                    eval_every=eval_every, eval_episodes=eval_episodes)  # fmt: skip
    seeds = len(group)
    init = jax.jit(jax.vmap(run.init))
    advance = jax.jit(jax.vmap(run.advance, in_axes=(0, 0, None)), donate_argnums=0)
    begun = time.perf_counter()
    carry = init(keys)
    returns, finite, chunk_seconds, done = [], np.ones(seeds, bool), [], 0
    if checkpoint is not None and (checkpoint / "progress.json").exists():
        saved = read_json(checkpoint / "progress.json", "benchmark checkpoint")
        if saved["identity"] != identity:
            raise ValueError(f"checkpoint {checkpoint} is of another run: {saved['identity']}, not {identity}")
        carry = load_serialised(checkpoint / "carry.eqx", carry)
        done, chunk_seconds = saved["chunks"], saved["chunk_seconds"]
        returns = [np.asarray(r, np.float32) for r in saved["returns"]]
        finite = np.asarray(saved["finite"], bool)
        print(f"  {name}: resumed from {checkpoint} after {done * eval_every:,} steps", flush=True)
    for chunk in range(done, run.spec.num_evals):
        start = time.perf_counter()
        carry, metrics = advance(carry, jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, chunk), jnp.int32(chunk))
        metrics = jax.device_get(metrics)
        chunk_seconds.append(time.perf_counter() - start)
        returns.append(metrics["eval_return"])
        for value in metrics.values():
            finite &= np.all(np.isfinite(np.asarray(value, np.float64)).reshape(seeds, -1), axis=1)
        if checkpoint is not None:
            write_atomic(checkpoint / "carry.eqx", serialise(carry))
            progress = dict(identity=identity, chunks=chunk + 1, chunk_seconds=chunk_seconds,
                            returns=[np.asarray(r).tolist() for r in returns], finite=finite.tolist())  # fmt: skip
            write_json(checkpoint / "progress.json", progress)
        if chunk % 10 == 9 or chunk == run.spec.num_evals - 1:
            print(f"  {name} step {int(metrics['step'][0]):,}: returns {np.round(metrics['eval_return'], 1).tolist()}")
    steps = (np.arange(run.spec.num_evals) + 1) * eval_every
    curves = np.stack(returns, axis=1)  # (seeds, evaluations)
    reached = [steps_to_threshold(steps, curve) for curve in curves]
    result = dict(
        agent=name,
        seeds=seeds,
        seed_indices=list(group),
        steps=steps.tolist(),
        returns=curves.tolist(),
        steps_to_threshold=reached,
        final_return=float(curves[:, -1].mean()),
        nan_runs=int(np.sum(~finite)),
        compile_and_first_chunk_s=chunk_seconds[0],
        rest_s=float(sum(chunk_seconds[1:])),
        wall_s=time.perf_counter() - begun,
    )
    return result, carry


def merge_groups(results: list[dict]) -> list[dict]:
    """One result per agent: the seed groups of an agent (same steps) joined, seeds in index order; the
    wall times add up (the groups ran one after another)."""
    merged: dict[str, dict] = {}
    for r in results:
        m = merged.get(r["agent"])
        if m is None:
            merged[r["agent"]] = dict(r, seed_indices=r.get("seed_indices", list(range(r["seeds"]))))
            continue
        if m["steps"] != r["steps"]:
            raise ValueError(f"{r['agent']}: seed groups with different evaluation steps cannot be merged")
        indices = m["seed_indices"] + r.get("seed_indices", list(range(r["seeds"])))
        if len(set(indices)) != len(indices):
            raise ValueError(f"{r['agent']}: a seed appears in two of the merged groups ({indices})")
        order = np.argsort(indices)
        m.update(
            seeds=len(indices),
            seed_indices=sorted(indices),
            returns=[(m["returns"] + r["returns"])[i] for i in order],
            steps_to_threshold=[(m["steps_to_threshold"] + r["steps_to_threshold"])[i] for i in order],
            nan_runs=m["nan_runs"] + r["nan_runs"],
            compile_and_first_chunk_s=m["compile_and_first_chunk_s"] + r["compile_and_first_chunk_s"],
            rest_s=m["rest_s"] + r["rest_s"],
            wall_s=m["wall_s"] + r["wall_s"],
        )
        m["final_return"] = float(np.mean([curve[-1] for curve in m["returns"]]))
    return list(merged.values())


def quartiles(values: list[float]) -> str:
    """`median [q1, q3]` over seeds (unreached seeds are infinite, so a median over them is too), how
    many reached, and each seed's."""
    finite = [v for v in values if np.isfinite(v)]
    with np.errstate(invalid="ignore"):  # inf - inf where several seeds never reach it
        q = np.percentile(np.asarray(values), [25, 50, 75])
    q1, median, q3 = np.where(np.isnan(q), np.inf, q)
    show = lambda v: f"{v:,.0f}" if np.isfinite(v) else "not reached"
    seeds = ", ".join(show(v) for v in values)
    return f"{show(median)} [{show(q1)}, {show(q3)}] ({len(finite)}/{len(values)} reached; seeds: {seeds})"


def learning_table(results: list[dict]) -> str:
    """The learning study as a markdown table."""
    header = ["agent", "seeds", "steps to -200: median [IQR]", "final return (mean)", "NaN runs", "wall s"]
    rows = []
    for r in results:
        wall = f"{r['wall_s']:.0f} ({r['compile_and_first_chunk_s']:.0f} compiling + first chunk)"
        final = f"{r['final_return']:.1f} at {r['steps'][-1]:,}"
        rows.append([r["agent"], str(r["seeds"]), quartiles(r["steps_to_threshold"]), final, str(r["nan_runs"]), wall])
    return common.markdown_table(header, rows)


# --- variance per horizon -------------------------------------------------------------------------


def variance_study(carry, horizons: tuple[int, ...], repeats: int) -> list[dict]:
    """Actor-gradient statistics of a trained svg agent (seed 0 of `carry`), see the module docstring."""
    params = jax.tree.map(lambda x: x[0], carry.params)
    buffer = jax.tree.map(lambda x: x[0], carry.buffer)
    config = SETTINGS["svg"]
    obs_dim, action_dim = buffer.data.obs.shape[-1], params.sac.bounds.low.shape[-1]
    agent_static = eqx.partition(
        eqx.filter_eval_shape(lambda: init_sac(jax.random.key(0), obs_dim, action_dim, config.sac)),
        lambda x: isinstance(x, jax.ShapeDtypeStruct),
    )[1]
    sac = eqx.combine(params.sac.state, agent_static)
    ensemble = ensemble_of(params, obs_dim, action_dim, config.dynamics)
    step_fn = model_step_fn(ensemble, params.model, config.dynamics.num_elites, termination_for(ENV))
    obs = sample(buffer, jax.random.key(7), 256).obs
    bounds = params.sac.bounds
    actor_arrays, actor_static = eqx.partition(sac.actor, eqx.is_array)

    def estimates(objective):
        def grad(key):
            loss = lambda a: objective(eqx.combine(a, actor_static), sac.critic, sac.log_alpha, obs, bounds, key)[0]
            return jax.grad(loss)(actor_arrays)

        return jax.jit(lambda keys: jax.lax.map(grad, keys))(jax.random.split(jax.random.key(1), repeats))

    objectives = {(0, "pathwise"): actor_loss, (0, "score"): score_actor_loss}
    for h in horizons:
        for estimator in ("pathwise", "score"):
            objectives[h, estimator] = svg_objective(step_fn, h, config.sac.gamma, estimator)
    out = []
    for h in (0, *horizons):
        grads = {e: estimates(objectives[h, e]) for e in ("pathwise", "score")}
        reference = jax.tree.map(lambda g: jnp.mean(g, 0), grads["pathwise"])
        for estimator, g in grads.items():
            stats = summarize(g, reference)
            flat = lambda tree: np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])
            out.append(
                dict(
                    horizon=h,
                    estimator=estimator,
                    total_variance=float(flat(stats.variance).sum()),
                    median_snr=float(np.nanmedian(flat(stats.snr))),  # 0/0 where a ReLU unit is dead
                    bias_norm_over_mean_norm=float(np.linalg.norm(flat(stats.bias)) / np.linalg.norm(flat(reference))),
                )
            )
            print(f"  H={h} {estimator}: {out[-1]}", flush=True)
    return out


def variance_table(rows: list[dict]) -> str:
    """The variance study as a markdown table (score / pathwise ratio per horizon)."""
    by = {(r["horizon"], r["estimator"]): r for r in rows}
    header = ["H", "pathwise total var", "score total var", "ratio score/pathwise", "median SNR pathwise", "score"]
    table = []
    for h in sorted({r["horizon"] for r in rows}):
        p, s = by[h, "pathwise"], by[h, "score"]
        table.append(
            [
                f"{h}{' (SAC)' if h == 0 else ''}",
                f"{p['total_variance']:.3g}",
                f"{s['total_variance']:.3g}",
                f"{s['total_variance'] / p['total_variance']:.3g}",
                f"{p['median_snr']:.3g}",
                f"{s['median_snr']:.3g}",
            ]
        )
    return common.markdown_table(header, table)


# --- MuJoCo: the host-loop commands on the same budget ---------------------------------------------

# mbpo as in SETTINGS: one-step model rollouts (256 per env step, 5% real data), 5 SAC gradient steps per
# env step; SAC: the command's defaults. Both keep the commands' 1,000 warm-up steps.
MUJOCO_FLAGS = {
    "sac": ["sac"],
    "mbpo": ["world-model", "--agent", "mbpo", "--horizon", "1", "--gradient-steps", "5"],
}


def mujoco_run(name: str, env: str, seeds: int, total_steps: int, every: int, episodes: int, out: Path) -> dict:
    """One agent's command on `env` (the host loop, seeds one after another): returns per evaluation."""
    folder = out / f"{env}-{name}"
    command = [str(Path(sys.executable).with_name("reparam")), *MUJOCO_FLAGS[name], "--env", env]
    command += ["--total-steps", str(total_steps), "--num-seeds", str(seeds), "--eval-every", str(every)]
    command += ["--eval-episodes", str(episodes), "--out", str(folder)]
    if name != "sac" and (out / f"{env}-sac" / "metrics.jsonl").is_file():
        command += ["--sac-run", str(out / f"{env}-sac")]
    print("  " + " ".join(command), flush=True)
    begun = time.perf_counter()
    subprocess.run(command, check=True)
    steps, by_step = returns_by_step([r for r in read_rows(folder) if "eval_return" in r])
    return dict(
        agent=name,
        env=env,
        seeds=seeds,
        command=" ".join(command[1:]),
        steps=list(steps),
        returns=by_step.T.tolist(),  # (seeds, evaluations)
        final_return=float(by_step[-1].mean()),
        nan_runs=int(np.sum(~np.all(np.isfinite(by_step), axis=0))),
        wall_s=time.perf_counter() - begun,
    )


def mujoco_table(results: list[dict]) -> str:
    """The MuJoCo study as a markdown table: mean return over seeds at every evaluation."""
    steps = results[0]["steps"]
    header = ["agent", "env", "seeds", *[f"{s:,}" for s in steps], "NaN runs", "wall s"]
    rows = []
    for r in results:
        means = np.mean(np.asarray(r["returns"]), axis=0)
        returns = [f"{m:.0f}" for m in means]
        rows.append([r["agent"], r["env"], str(r["seeds"]), *returns, str(r["nan_runs"]), f"{r['wall_s']:.0f}"])
    return common.markdown_table(header, rows)


def main(argv=None) -> None:
    """Parse the options, run the studies, print and save the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", choices=("learning", "variance", "both", "mujoco"), default="both")
    p.add_argument("--agents", default="sac,svg,mbpo")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--variance-steps", type=int, default=5_000)
    p.add_argument("--horizons", default="1,3,5,10")
    p.add_argument("--repeats", type=int, default=64)
    p.add_argument("--json", default="benchmarks/results/world_model.json")
    p.add_argument("--markdown", default="benchmarks/results/world_model_tables.md")
    p.add_argument("--env", default="Hopper-v5", help="--study mujoco: the Gymnasium id")
    p.add_argument("--mujoco-eval-every", type=int, default=2_000)
    p.add_argument("--mujoco-eval-episodes", type=int, default=5)
    p.add_argument("--runs", default="runs/world-model-benchmark", help="--study mujoco: the run folders' parent")
    p.add_argument("--seed-group", help="START:STOP: train only seeds START..STOP-1 of --seeds (see above)")
    p.add_argument("--table", nargs="+", help="re-print the tables of these --json files (groups merged)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="--study learning: a folder per agent under it holds the carry after every evaluation; rerun the "
        "same command to continue exactly",
    )
    args = p.parse_args(argv)
    if args.table:
        saved = [common.read_json(path) for path in args.table]
        gather = lambda key: [row for record in saved for row in record.get(key) or []]
        learning, variance, mujoco = merge_groups(gather("learning")), gather("variance"), gather("mujoco")
        print(learning_table(learning) if learning else "")
        print(variance_table(variance) if variance else "")
        print(mujoco_table(mujoco) if mujoco else "")
        return
    group = None
    if args.seed_group:
        start, _, stop = args.seed_group.partition(":")
        ok = start.isdigit() and stop.isdigit() and 0 <= int(start) < int(stop) <= args.seeds
        if not ok or args.study == "mujoco":
            p.error(
                f"--seed-group {args.seed_group}: need START:STOP with 0 <= START < STOP <= --seeds ({args.seeds}), "
                "for the learning study"
            )
        group = range(int(start), int(stop))
    versions = common.versions("jax", "jaxlib", "equinox", "optax", "reparam")
    started = common.announce("reparam world-model benchmark", versions)
    load_start = common.loadavg()
    learning, variance, mujoco, svg_carry = [], [], [], None
    if args.study == "mujoco":
        for name in ("sac", "mbpo"):
            every, episodes = args.mujoco_eval_every, args.mujoco_eval_episodes
            mujoco.append(mujoco_run(name, args.env, args.seeds, args.total_steps, every, episodes, Path(args.runs)))
            common.write_json(args.json, common.record(versions, load_start=load_start, mujoco=mujoco))
    if args.study in ("learning", "both"):
        for name in args.agents.split(","):
            folder = None if args.checkpoint is None else args.checkpoint / name
            result, carry = learning_run(
                name, args.seeds, args.total_steps, args.eval_every, args.eval_episodes, group, folder
            )
            learning.append(result)
            if name == "svg":
                svg_carry = carry
            common.write_json(args.json, common.record(versions, load_start=load_start, learning=learning))
    if args.study in ("variance", "both"):
        if svg_carry is None:
            every = min(args.eval_every * 5, args.variance_steps)
            _, svg_carry = learning_run("svg", 1, args.variance_steps, every, 2)
        horizons = tuple(int(h) for h in args.horizons.split(","))
        variance = variance_study(svg_carry, horizons, args.repeats)
    record = common.record(
        versions,
        load_start=load_start,
        load_end=common.loadavg(),
        settings={k: repr(v) for k, v in SETTINGS.items()},
        learning=learning,
        variance=variance,
        mujoco=mujoco,
    )
    common.write_json(args.json, record)
    tables = []
    if learning:
        tables.append(learning_table(learning))
    if variance:
        tables.append(variance_table(variance))
    if mujoco:
        tables.append(mujoco_table(mujoco))
    text = "\n\n".join(tables)
    print(text)
    with open(args.markdown, "w") as f:
        f.write(f"<!-- {record['command']} ({record['date']}, load {load_start} -> {record['load_end']}) -->\n")
        f.write(text + "\n")
    common.finish(started)


if __name__ == "__main__":
    main()
