#!/usr/bin/env python
"""SAC benchmark: reparam's two loops side by side with Stable-Baselines3 and SBX, the compiled
loop's scaling over vmapped seeds, and the fraction of the machine's matmul throughput that one
update reaches.

Run from the repository root in the benchmark venv (set-up in benchmarks/README.md):

    .venv-bench/bin/python benchmarks/sac.py side-by-side              # 3 seeds x 20,000 steps, ~45 min on 2 CPU cores
    .venv-bench/bin/python benchmarks/sac.py side-by-side --total-steps 1500 --learning-starts 500 --seeds 0   # smoke
    .venv-bench/bin/python benchmarks/sac.py scaling                   # 1, 8, 64, 256 seeds vmapped
    .venv-bench/bin/python benchmarks/sac.py scaling --num-seeds 1 8 --timed-steps 8   # smoke
    .venv-bench/bin/python benchmarks/sac.py flops                     # FLOPs per update / time per update / matmul peak
    .venv-bench/bin/python benchmarks/sac.py diagnose                  # compiled loop: warm-up under vmap, carry donation
    .venv-bench/bin/python benchmarks/sac.py table benchmarks/results/sac_side_by_side.json   # re-print a table

Every subcommand prints its tables (markdown) and writes a JSON under benchmarks/results/ (`--out`).
Nothing here is CPU-specific: on a GPU machine the same commands run reparam and SBX on the GPU
(SB3 stays on the CPU, `device="cpu"`).

**side-by-side** -- the same work for every contender: Gymnasium Pendulum-v1 (reparam's compiled loop:
gymnax Pendulum-v1, the same dynamics), `--total-steps` 20,000 env steps, 1 gradient step per env step
after `--learning-starts` 1,000 uniform-random warm-up steps, batch 256, 256x256 ReLU MLPs for the
actor and both critics, gamma 0.99, tau 0.005, Adam 3e-4, learned temperature (initial 1, target
entropy -dim(A)), buffer 1e6, no gSDE. Contenders: `sb3` (SB3 2.9.2 SAC, torch, 2 threads, CPU),
`sbx` (SBX 0.28 SAC, jax), `host` (`reparam.rl.host.train_host` on Gymnasium Pendulum-v1) and
`compiled` (`reparam.rl.train.make_train` on gymnax Pendulum-v1, vmapped and jitted exactly as
`reparam sac` does, via `reparam.rl.run.compiled_run`). For each seed the four run back to back,
each in its own fresh process, so that a noisy shared machine loads them alike; `/proc/loadavg` is
recorded before and after each run. Per run:
- *wall*: from building the agent (imports excluded) to the end of training, compilation included;
  the host loop's includes its own final 10-episode evaluation (~0.2 s), the compiled loop's its
  in-loop evaluations (one per 1,000-step chunk, vmapped, a few ms each).
- *train steps/s*: the training phase only. SB3, SBX, host: a per-step callback (SB3 `BaseCallback`,
  `train_host(progress=...)`) timestamps every env step; the rate is `(b - a) / (t_b - t_a)` with
  `a = learning_starts + 10` (the first ten gradient steps, in which SBX and reparam compile, are
  left out) and `b = total_steps - 1` (the host loop's final evaluation is left out). Compiled: the
  program is compiled ahead of time (`.lower().compile()`, timed separately as *compile*), chunk 0
  (steps 1..1,000) is the warm-up, and the rate is the steps of chunks 1.. divided by their time.
  For the host loop the library's own figure (`HostLoopResult.steps_per_second`, which also leaves
  out compiling steps) is kept as `host_internal_steps_per_second`.
- *return*: the final policy's deterministic action on a fresh Gymnasium Pendulum-v1, 10 episodes
  with reset seeds `EVAL_SEED + i` -- the same episodes for every contender and seed. SB3 and SBX
  through `model.predict(obs, deterministic=True)`, reparam through `tanh(mu)` rescaled to the bounds
  (`reparam.rl.host.deterministic_action`). reparam's own final evaluations are kept too.
- peak RSS of the process (`ru_maxrss`).

**scaling** -- the compiled loop with K seeds vmapped (K in `--num-seeds`, default 1 8 64 256), paper
sizes, gymnax Pendulum-v1, `advance` vmapped and jitted by `compiled_run` (carry donated). The
training phase is timed: the carry first goes through the 1,000-step warm-up (one vmapped chunk of 1,000 steps,
timed with its compilation as `warmup_s`; the learn/skip `lax.cond` keeps its branch under `vmap`), then `--chunks` chunks of T env steps each
(T from `--timed-steps`, default shrinking with K because one env step costs K updates) are timed
after an ahead-of-time compile. Each chunk ends with a 1-episode evaluation per seed (200 actor
steps, well under 1% of a chunk's FLOPs). Reported: compile time, aggregate and per-seed env
steps/s (median chunk), XLA's planned memory (`memory_analysis()`: arguments, outputs, temporaries)
and the process's peak RSS (each K in its own process), and whether every seed's metrics and every
parameter are finite.

**flops** -- XLA's cost analysis of one `reparam.rl.sac.update` at paper sizes (Pendulum: obs 3,
action 1, batch 256, 256x256), the time per update both as one jitted call per update and as a
`lax.scan` of `--scan-length` updates in one call (no dispatch), and the measured float32 matmul
throughput (2048x2048 and 256x256 matmuls under jit): achieved GFLOP/s and the fraction of that peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).resolve().parent / "results"
CONTENDERS = ("sb3", "sbx", "host", "compiled")
LABELS = {"sb3": "SB3 2.9.2 (torch)", "sbx": "SBX 0.28 (jax)", "host": "reparam host loop",
          "compiled": "reparam compiled loop (gymnax)"}
EVAL_SEED = 10_000
"""Evaluation episode i of every contender and seed starts from `reset(seed=EVAL_SEED + i)`."""
SKIP_TRAIN_STEPS = 10
"""Gradient steps at the start of the training phase left out of the rate (JIT compilation)."""


# --- shared helpers ------------------------------------------------------------------------------

def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    for name in ("jax", "jaxlib", "equinox", "optax", "flax", "torch", "stable_baselines3", "sbx", "gymnasium", "gymnax"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # not installed, or no __version__
            pass
    try:
        import jax

        out["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception:
        pass
    return out


def evaluate_gym(act, episodes: int = 10) -> list[float]:
    """Undiscounted returns of `episodes` Pendulum-v1 episodes with `act(obs) -> action`."""
    import gymnasium as gym
    import numpy as np

    env = gym.make("Pendulum-v1")
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            action = np.asarray(act(obs), np.float32).reshape(env.action_space.shape)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def training_rate(times, a: int, b: int) -> float:
    """Env steps per second between the timestamps of steps `a` and `b`."""
    return (b - a) / (times[b] - times[a])


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    tmp.replace(path)


def fmt(x, digits=1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


# --- side by side: one contender, one seed (each in its own process) ------------------------------

def run_peer(kind: str, seed: int, total: int, learning_starts: int, episodes: int) -> dict:
    """SB3 (torch, 2 threads, CPU) or SBX SAC with the benchmark's settings."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback

    if kind == "sb3":
        import torch
        from stable_baselines3 import SAC

        torch.set_num_threads(2)
        extra = dict(device="cpu")
    else:
        from sbx import SAC

        extra = {}
    times = np.full(total + 1, np.nan)

    class Stamp(BaseCallback):
        def _on_step(self) -> bool:
            times[self.num_timesteps] = time.perf_counter()
            return True

    start = time.perf_counter()
    model = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_rate=3e-4, buffer_size=1_000_000,
                learning_starts=learning_starts, batch_size=256, tau=0.005, gamma=0.99, train_freq=1,
                gradient_steps=1, ent_coef="auto", target_entropy="auto", use_sde=False,
                policy_kwargs=dict(net_arch=[256, 256]), seed=seed, verbose=0, **extra)
    model.learn(total_timesteps=total, callback=Stamp())
    end = time.perf_counter()
    a, b = learning_starts + SKIP_TRAIN_STEPS, total - 1
    returns = evaluate_gym(lambda obs: model.predict(obs, deterministic=True)[0], episodes)
    return dict(wall_s=end - start, train_steps_per_second=training_rate(times, a, b), timed_steps=[a, b],
                warmup_s=float(times[learning_starts - 1] - start), compile_s=None, eval_returns=returns,
                eval_return=statistics.fmean(returns), own_eval_return=None)


def run_host(seed: int, total: int, learning_starts: int, episodes: int) -> dict:
    """reparam's Gymnasium host loop (`train_host`)."""
    import equinox as eqx
    import gymnasium as gym
    import jax.numpy as jnp
    import numpy as np

    from reparam.rl.host import deterministic_action, train_host
    from reparam.rl.sac import ActionBounds, SACConfig

    times = np.full(total + 1, np.nan)

    def progress(done, _total):
        times[done] = time.perf_counter()

    start = time.perf_counter()
    result = train_host("Pendulum-v1", SACConfig(learning_starts=learning_starts), total, seed,
                        eval_every=total, eval_episodes=episodes, progress=progress)
    end = time.perf_counter()
    a, b = learning_starts + SKIP_TRAIN_STEPS, total - 1
    space = gym.make("Pendulum-v1").action_space
    bounds = ActionBounds(np.asarray(space.low, np.float32), np.asarray(space.high, np.float32))
    act = eqx.filter_jit(deterministic_action)
    returns = evaluate_gym(lambda obs: act(result.state.actor, jnp.asarray(obs, jnp.float32)[None], bounds)[0], episodes)
    return dict(wall_s=end - start, train_steps_per_second=training_rate(times, a, b), timed_steps=[a, b],
                host_internal_steps_per_second=result.steps_per_second,
                warmup_s=float(times[learning_starts - 1] - start), compile_s=None, eval_returns=returns,
                eval_return=statistics.fmean(returns), own_eval_return=result.metrics[-1]["eval_return"],
                own_metrics=result.metrics[-1])


def run_compiled(seed: int, total: int, learning_starts: int, episodes: int) -> dict:
    """reparam's compiled loop on gymnax Pendulum-v1, as `reparam sac --num-seeds 1 --seed SEED
    --eval-every LEARNING_STARTS` runs it (vmapped over one seed), compiled ahead of time."""
    import equinox as eqx
    import gymnasium as gym
    import jax
    import jax.numpy as jnp
    import numpy as np

    from reparam.rl.host import deterministic_action
    from reparam.rl.run import compiled_run
    from reparam.rl.sac import ActionBounds, SACConfig
    from reparam.rl.train import RunSpec

    if total % learning_starts:
        raise SystemExit("compiled: --total-steps must be a multiple of --learning-starts (one chunk each)")
    start = time.perf_counter()
    spec = RunSpec(total, learning_starts, episodes)  # chunk 0 is exactly the warm-up
    compiled, init, advance = compiled_run(SACConfig(learning_starts=learning_starts), "gymnax:Pendulum-v1", spec)
    keys = jax.random.split(jax.random.key(seed), 1)
    chunk_keys = [jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys) for i in range(spec.num_evals)]
    init_c = init.lower(keys).compile()
    carry = init_c(keys)
    advance_c = advance.lower(carry, chunk_keys[0], jnp.int32(0)).compile()
    jax.block_until_ready(carry)
    compile_s = time.perf_counter() - start
    chunk_s, rows = [], []
    for i, ck in enumerate(chunk_keys):
        t = time.perf_counter()
        carry, metrics = advance_c(carry, ck, jnp.int32(i))
        jax.block_until_ready((carry, metrics))
        chunk_s.append(time.perf_counter() - t)
        rows.append({k: float(np.asarray(v)[0]) for k, v in metrics.items()})
    end = time.perf_counter()
    finite = all(np.isfinite(v) for r in rows for v in r.values()) and all(
        bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(carry.sac) if jnp.issubdtype(x.dtype, jnp.floating))
    actor = jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, eqx.combine(carry.sac, compiled.static).actor)
    space = gym.make("Pendulum-v1").action_space
    bounds = ActionBounds(np.asarray(space.low, np.float32), np.asarray(space.high, np.float32))
    act = eqx.filter_jit(deterministic_action)
    returns = evaluate_gym(lambda obs: act(actor, jnp.asarray(obs, jnp.float32)[None], bounds)[0], episodes)
    train_steps = (spec.num_evals - 1) * spec.eval_every
    return dict(wall_s=end - start, train_steps_per_second=train_steps / sum(chunk_s[1:]),
                timed_steps=[learning_starts, total], compile_s=compile_s, warmup_s=chunk_s[0], chunk_s=chunk_s,
                eval_returns=returns, eval_return=statistics.fmean(returns), own_eval_return=rows[-1]["eval_return"],
                own_metrics=rows[-1], finite=finite)


def one(args) -> None:
    runner = {"sb3": lambda *a: run_peer("sb3", *a), "sbx": lambda *a: run_peer("sbx", *a), "host": run_host,
              "compiled": run_compiled}[args.contender]
    result = runner(args.seed, args.total_steps, args.learning_starts, args.eval_episodes)
    result.update(contender=args.contender, seed=args.seed, peak_rss_mib=peak_rss_mib())
    write_json(Path(args.json), result)


# --- side by side: the orchestrator ---------------------------------------------------------------

def side_by_side(args) -> None:
    out = Path(args.out)
    data = dict(kind="side-by-side", started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), uptime_start=uptime(),
                settings=dict(total_steps=args.total_steps, learning_starts=args.learning_starts,
                              eval_episodes=args.eval_episodes, sb3_omp_wait_policy=args.sb3_omp_wait_policy, seeds=args.seeds, contenders=args.contenders,
                              eval_seed=EVAL_SEED, skip_train_steps=SKIP_TRAIN_STEPS),
                versions=versions(), command=" ".join([Path(sys.executable).name] + sys.argv), runs=[])
    print(f"# SAC side by side, {data['started']}; {data['uptime_start']}", flush=True)
    for seed in args.seeds:
        for contender in args.contenders:
            tmp = out.with_name(f"{out.stem}.{contender}.{seed}.tmp.json")
            before = loadavg()
            t = time.perf_counter()
            cmd = [sys.executable, __file__, "one", "--contender", contender, "--seed", str(seed), "--json", str(tmp),
                   "--total-steps", str(args.total_steps), "--learning-starts", str(args.learning_starts),
                   "--eval-episodes", str(args.eval_episodes)]
            env = dict(os.environ)
            if contender == "sb3" and args.sb3_omp_wait_policy != "default":
                env["OMP_WAIT_POLICY"] = args.sb3_omp_wait_policy
            proc = subprocess.run(cmd, env=env)
            elapsed = time.perf_counter() - t
            if proc.returncode:
                result = dict(contender=contender, seed=seed, error=f"exit {proc.returncode}")
            else:
                result = json.loads(tmp.read_text())
                tmp.unlink()
            result.update(load_before=before, load_after=loadavg(), process_s=elapsed)
            data["runs"].append(result)
            write_json(out, data)
            print(f"seed {seed} {contender:9s}: " + (result.get("error") or
                  f"{result['train_steps_per_second']:.1f} train steps/s, wall {result['wall_s']:.0f} s, "
                  f"return {result['eval_return']:.1f}, load {before[0]:.2f} -> {result['load_after'][0]:.2f}"), flush=True)
    data.update(finished=time.strftime("%Y-%m-%d %H:%M:%S %Z"), uptime_end=uptime())
    write_json(out, data)
    print(side_by_side_tables(data))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(map(str, loadavg()))


def side_by_side_tables(data: dict) -> str:
    runs = [r for r in data["runs"] if "error" not in r]
    seeds = sorted({r["seed"] for r in runs})
    present = [c for c in CONTENDERS if any(r["contender"] == c for r in runs)]
    get = {(r["contender"], r["seed"]): r for r in runs}
    lines = [f"Settings: {data['settings']}", "", "Per run (return: deterministic policy, 10 fresh Gymnasium "
             "Pendulum-v1 episodes, the same for every contender):", "",
             "| seed | contender | train env steps/s | wall s | compile s | warm-up s | final return | reparam's own eval | load 1-min before -> after | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for seed in seeds:
        for c in present:
            r = get.get((c, seed))
            if r is None:
                continue
            lines.append(f"| {seed} | {LABELS[c]} | {r['train_steps_per_second']:.1f} | {r['wall_s']:.0f} | "
                         f"{fmt(r.get('compile_s'))} | {r['warmup_s']:.1f} | {r['eval_return']:.1f} | "
                         f"{fmt(r.get('own_eval_return'))} | {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f} | "
                         f"{r['peak_rss_mib']:.0f} |")
    lines += ["", "Summary (mean over seeds; returns per seed in seed order):", "",
              "| contender | train env steps/s | wall s | final return, mean | final returns per seed |", "|---|---|---|---|---|"]
    mean = lambda c, k: statistics.fmean(get[(c, s)][k] for s in seeds if (c, s) in get)
    for c in present:
        per = ", ".join(f"{get[(c, s)]['eval_return']:.0f}" for s in seeds if (c, s) in get)
        lines.append(f"| {LABELS[c]} | {mean(c, 'train_steps_per_second'):.1f} | {mean(c, 'wall_s'):.0f} | "
                     f"{mean(c, 'eval_return'):.1f} | {per} |")
    pairs = [(a, b) for a in ("host", "compiled") for b in ("sb3", "sbx") if a in present and b in present]
    if pairs:
        lines += ["", "Ratios, paired by seed (interleaved runs): training-phase env steps/s reparam / peer, "
                  "and wall time peer / reparam (above 1, reparam is faster):", "",
                  "| ratio | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | wall-time ratio, mean |",
                  "|---|" + "---|" * (len(seeds) + 2)]
        for a, b in pairs:
            ratios = [get[(a, s)]["train_steps_per_second"] / get[(b, s)]["train_steps_per_second"]
                      for s in seeds if (a, s) in get and (b, s) in get]
            walls = [get[(b, s)]["wall_s"] / get[(a, s)]["wall_s"] for s in seeds if (a, s) in get and (b, s) in get]
            lines.append(f"| {LABELS[a]} / {LABELS[b]} | " + " | ".join(f"{x:.2f}x" for x in ratios)
                         + f" | {statistics.fmean(ratios):.2f}x | {statistics.fmean(walls):.2f}x |")
    errors = [r for r in data["runs"] if "error" in r]
    if errors:
        lines += ["", "Failed runs: " + ", ".join(f"{r['contender']} seed {r['seed']} ({r['error']})" for r in errors)]
    if any(r.get("finite") is False for r in runs):
        lines += ["", "NON-FINITE values in a compiled run: " + str([r["seed"] for r in runs if r.get("finite") is False])]
    lines += ["", f"Machine: {data['versions'].get('cpus')} CPUs; {data['uptime_start']} (start); "
              f"{data.get('uptime_end', '?')} (end)"]
    return "\n".join(lines)


# --- compiled-loop scaling over vmapped seeds ------------------------------------------------------

DEFAULT_TIMED_STEPS = {1: 256, 8: 64, 64: 16, 256: 8}


def scaling_one(args) -> None:
    """One seed count in its own process: warm-up, ahead-of-time compile, timed training chunks."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from reparam.rl.run import compiled_run
    from reparam.rl.sac import SACConfig
    from reparam.rl.train import RunSpec

    k, steps, ls = args.seeds_one, args.timed_steps_one, args.learning_starts
    config = SACConfig(learning_starts=ls)
    # Same total_steps, hence the same buffer capacity and carry: the warm-up runs as one chunk of
    # `ls` steps (no gradient steps: the learn/skip cond keeps its branch under vmap), its compile
    # included in warmup_s; the timed chunks start at the first whole chunk after it.
    _, _, warm_advance = compiled_run(config, "gymnax:Pendulum-v1", RunSpec(args.total_steps, ls, 1))
    compiled, init, advance = compiled_run(config, "gymnax:Pendulum-v1", RunSpec(args.total_steps, steps, 1))
    keys = jax.random.split(jax.random.key(0), k)
    fold = lambda i: jax.vmap(lambda key: jax.random.fold_in(key, i))(keys)
    carry = init(keys)
    t = time.perf_counter()
    carry, _ = warm_advance(carry, fold(0), jnp.int32(0))
    jax.block_until_ready(carry)
    warmup_s = time.perf_counter() - t
    warm_chunks = -(-ls // steps)
    t = time.perf_counter()
    advance_c = advance.lower(carry, fold(warm_chunks), jnp.int32(warm_chunks)).compile()  # ahead of time
    compile_s = time.perf_counter() - t
    mem = advance_c.compiled.memory_analysis()
    memory = {name: getattr(mem, name + "_size_in_bytes", None) / 2**20 for name in ("argument", "output", "temp", "alias")} if mem else {}
    chunk_s, finite = [], True
    for i in range(warm_chunks, warm_chunks + args.chunks):
        ck = jax.block_until_ready(fold(i))
        t = time.perf_counter()
        carry, metrics = advance_c(carry, ck, jnp.int32(i))
        jax.block_until_ready((carry, metrics))
        chunk_s.append(time.perf_counter() - t)
        finite &= all(bool(np.all(np.isfinite(np.asarray(v)))) for v in metrics.values())
    params_finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(carry.sac)
                        if jnp.issubdtype(x.dtype, jnp.floating))
    median = statistics.median(chunk_s)
    result = dict(num_seeds=k, timed_steps_per_chunk=steps, chunks=args.chunks, chunk_s=chunk_s,
                  steps_timed_per_seed=steps * args.chunks, first_step=warm_chunks * steps + 1,
                  aggregate_steps_per_second=k * steps / median, per_seed_steps_per_second=steps / median,
                  best_aggregate_steps_per_second=k * steps / min(chunk_s), warmup_s=warmup_s, compile_s=compile_s,
                  xla_memory_mib=memory, peak_rss_mib=peak_rss_mib(), metrics_finite=finite, params_finite=params_finite,
                  last_eval_return=[float(x) for x in np.asarray(metrics["eval_return"])],
                  device=str(jax.devices()[0]))
    write_json(Path(args.json), result)


def scaling(args) -> None:
    out = Path(args.out)
    data = dict(kind="scaling", started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), uptime_start=uptime(),
                settings=dict(total_steps=args.total_steps, learning_starts=args.learning_starts, chunks=args.chunks),
                versions=versions(), command=" ".join([Path(sys.executable).name] + sys.argv), runs=[])
    print(f"# SAC compiled-loop scaling, {data['started']}; {data['uptime_start']}", flush=True)
    for i, k in enumerate(args.num_seeds):
        steps = args.timed_steps[i] if args.timed_steps and len(args.timed_steps) > 1 else (
            args.timed_steps[0] if args.timed_steps else DEFAULT_TIMED_STEPS.get(k, max(4, 2048 // k)))
        tmp = out.with_name(f"{out.stem}.{k}.tmp.json")
        before = loadavg()
        cmd = [sys.executable, __file__, "scaling-one", "--seeds-one", str(k), "--timed-steps-one", str(steps),
               "--chunks", str(args.chunks), "--total-steps", str(args.total_steps),
               "--learning-starts", str(args.learning_starts), "--json", str(tmp)]
        proc = subprocess.run(cmd)
        if proc.returncode:
            result = dict(num_seeds=k, error=f"exit {proc.returncode}")
        else:
            result = json.loads(tmp.read_text())
            tmp.unlink()
        result.update(load_before=before, load_after=loadavg())
        data["runs"].append(result)
        write_json(out, data)
        print(f"{k} seeds: " + (result.get("error") or f"{result['aggregate_steps_per_second']:.1f} steps/s aggregate, "
              f"{result['per_seed_steps_per_second']:.2f} per seed, finite={result['metrics_finite'] and result['params_finite']}"),
              flush=True)
    data.update(finished=time.strftime("%Y-%m-%d %H:%M:%S %Z"), uptime_end=uptime())
    write_json(out, data)
    print(scaling_table(data))


def scaling_table(data: dict) -> str:
    lines = ["| seeds | env steps timed per seed (chunks x steps) | aggregate env steps/s (median chunk) | per seed | best chunk, aggregate | compile s | warm-up s | XLA memory MiB (args + out + temp) | peak RSS MiB | all finite | load before -> after |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        if "error" in r:
            lines.append(f"| {r['num_seeds']} | {r['error']} |" + " |" * 9)
            continue
        m = r["xla_memory_mib"]
        mem = f"{m['argument']:.0f} + {m['output']:.0f} + {m['temp']:.0f}" if m else "-"
        lines.append(f"| {r['num_seeds']} | {r['steps_timed_per_seed']} ({r['chunks']} x {r['timed_steps_per_chunk']}) | "
                     f"{r['aggregate_steps_per_second']:.1f} | {r['per_seed_steps_per_second']:.2f} | "
                     f"{r['best_aggregate_steps_per_second']:.1f} | {r['compile_s']:.1f} | {r['warmup_s']:.1f} | {mem} | "
                     f"{r['peak_rss_mib']:.0f} | {'yes' if r['metrics_finite'] and r['params_finite'] else 'NO'} | "
                     f"{r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f} |")
    lines += ["", f"Device: {data['runs'][0].get('device', '?') if data['runs'] else '?'}; "
              f"{data['uptime_start']} (start); {data.get('uptime_end', '?')} (end)"]
    return "\n".join(lines)


# --- FLOP fraction -------------------------------------------------------------------------------

def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    return cost[0] if isinstance(cost, (list, tuple)) else cost


def _time_calls(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def flops(args) -> None:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from reparam.rl.host import train_phase
    from reparam.rl.replay import Transition, add_batch, init_buffer
    from reparam.rl.sac import ActionBounds, SACConfig, init_sac, update

    data = dict(kind="flops", started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), uptime_start=uptime(),
                versions=versions(), command=" ".join([Path(sys.executable).name] + sys.argv))
    print(f"# SAC update FLOPs, {data['started']}; {data['uptime_start']}", flush=True)
    obs_dim, action_dim, batch_size = 3, 1, 256  # Pendulum, paper sizes
    config = SACConfig()
    bounds = ActionBounds(jnp.full((action_dim,), -2.0), jnp.full((action_dim,), 2.0))
    k = jax.random.split(jax.random.key(0), 6)
    state = init_sac(k[0], obs_dim, action_dim, config)
    rows = lambda key, n: Transition(jax.random.normal(key, (n, obs_dim)), jax.random.uniform(key, (n, action_dim), minval=-2, maxval=2),
                                     -jax.random.uniform(key, (n,)) * 10, jax.random.normal(jax.random.fold_in(key, 1), (n, obs_dim)),
                                     jnp.zeros((n,)))
    batch = rows(k[1], batch_size)

    # 1. one update per jitted call
    step = eqx.filter_jit(update)
    compiled = step.lower(state, batch, k[2], config, bounds).compile()
    cost = _cost(compiled.compiled)
    update_flops = float(cost["flops"])
    s = state

    def call():
        nonlocal s
        s, m = compiled(s, batch, k[2], config, bounds)
        jax.block_until_ready(m)

    call()
    per_call = _time_calls(call, args.iterations)

    # 2. the host loop's training kernel: lax.scan of L x (sample a batch from a 20,000-row buffer + update)
    buffer = add_batch(init_buffer(jax.tree.map(lambda x: x[0], rows(k[3], 1)), 20_000), rows(k[3], 20_000))
    scan_config = SACConfig(gradient_steps=args.scan_length)
    params, static = eqx.partition(state, eqx.is_array)

    def kernel(params, buffer, key):
        new, metrics, key = train_phase(buffer, eqx.combine(params, static), key, scan_config, bounds)
        return eqx.filter(new, eqx.is_array), metrics, key

    kernel_c = jax.jit(kernel).lower(params, buffer, k[4]).compile()
    scan_flops = float(_cost(kernel_c)["flops"])
    p, key = params, k[4]

    def scan_call():
        nonlocal p, key
        p, m, key = kernel_c(p, buffer, key)
        jax.block_until_ready(m)

    scan_call()
    per_scan = _time_calls(scan_call, max(3, args.iterations * 2 // args.scan_length))

    # 3. float32 matmul throughput under jit
    peaks = {}
    for m_, n_, k_ in ((2048, 2048, 2048), (256, 256, 256)):
        a = jax.random.normal(k[5], (m_, k_), jnp.float32)
        b = jax.random.normal(k[5], (k_, n_), jnp.float32)
        mm = jax.jit(jnp.matmul).lower(a, b).compile()
        jax.block_until_ready(mm(a, b))
        reps = max(5, int(2e10 // (2 * m_ * n_ * k_)))
        times = _time_calls(lambda: jax.block_until_ready(mm(a, b)), reps)
        peaks[f"{m_}x{k_} @ {k_}x{n_}"] = dict(flops=2 * m_ * n_ * k_, median_s=statistics.median(times), best_s=min(times),
                                               gflops_median=2 * m_ * n_ * k_ / statistics.median(times) / 1e9,
                                               gflops_best=2 * m_ * n_ * k_ / min(times) / 1e9)
    peak = peaks["2048x2048 @ 2048x2048"]["gflops_best"]
    t_call, t_scan = statistics.median(per_call), statistics.median(per_scan) / args.scan_length
    data.update(update_flops=update_flops, update_bytes_accessed=float(cost.get("bytes accessed", float("nan"))),
                scan_length=args.scan_length, scan_flops_per_update=scan_flops,  # XLA counts a loop body once
                per_call_s=per_call, per_scan_s=per_scan, update_s_per_call=t_call, update_s_in_scan=t_scan,
                matmul=peaks, peak_gflops=peak, uptime_end=uptime(),
                achieved_gflops_per_call=update_flops / t_call / 1e9, achieved_gflops_in_scan=update_flops / t_scan / 1e9)
    write_json(Path(args.out), data)
    print(flops_table(data))


def flops_table(d: dict) -> str:
    lines = [f"FLOPs of one update (XLA cost analysis, Pendulum, batch 256, 256x256): {d['update_flops'] / 1e9:.3f} GFLOP "
             f"(the host loop's scan kernel, batch sampling included, whose loop body XLA counts once: {d['scan_flops_per_update'] / 1e9:.3f} GFLOP per update)", "",
             "| float32 matmul under jit | GFLOP/s (best) | GFLOP/s (median) |", "|---|---|---|"]
    for name, m in d["matmul"].items():
        lines.append(f"| {name} | {m['gflops_best']:.1f} | {m['gflops_median']:.1f} |")
    lines += ["", "| update | ms per update (median) | achieved GFLOP/s | fraction of the 2048 matmul peak |", "|---|---|---|---|",
              f"| one jitted `update` call per update ({len(d['per_call_s'])} calls) | {d['update_s_per_call'] * 1e3:.2f} | "
              f"{d['achieved_gflops_per_call']:.1f} | {d['achieved_gflops_per_call'] / d['peak_gflops']:.0%} |",
              f"| `lax.scan` of {d['scan_length']} (sample + update), host loop's kernel ({len(d['per_scan_s'])} calls) | "
              f"{d['update_s_in_scan'] * 1e3:.2f} | {d['achieved_gflops_in_scan']:.1f} | "
              f"{d['achieved_gflops_in_scan'] / d['peak_gflops']:.0%} |",
              "", f"{d['uptime_start']} (start); {d['uptime_end']} (end)"]
    return "\n".join(lines)


# --- diagnostics of the compiled loop --------------------------------------------------------------

def diagnose(args) -> None:
    """Two facts about `compiled_run` that the tables lean on: (1) the warm-up chunk's time vmapped
    over one seed (as `reparam sac` runs it) vs unvmapped; (2) the memory XLA plans for a K-seed
    `advance` with the carry donated or not."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from reparam.rl.run import compiled_run
    from reparam.rl.sac import SACConfig
    from reparam.rl.train import RunSpec

    print(f"# compiled-loop diagnostics; {uptime()}", flush=True)
    ls = args.learning_starts
    compiled, init, advance = compiled_run(SACConfig(learning_starts=ls), "gymnax:Pendulum-v1",
                                           RunSpec(args.total_steps, ls, 10))
    keys = jax.random.split(jax.random.key(0), 1)
    key0 = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    unbatch = lambda tree: jax.tree.map(lambda x: x[0], tree)
    chunk = jnp.int32(0)
    for name, fn, batched in (("vmapped over 1 seed (reparam sac)", advance, True),
                              ("not vmapped", eqx.filter_jit(compiled.advance), False)):
        prepare = (lambda: (init(keys), jnp.array(key0, copy=True))) if batched else (
            lambda: (unbatch(init(keys)), jnp.array(key0[0], copy=True)))
        fn_c = fn.lower(*prepare(), chunk).compile()
        for _ in range(args.repeats):
            carry, key = jax.block_until_ready(prepare())
            t = time.perf_counter()
            jax.block_until_ready(fn_c(carry, key, jnp.int32(0)))  # donated: a fresh chunk index
            print(f"warm-up chunk ({ls} uniform-random steps, 1 gradient step, 10-episode evaluation), {name}: "
                  f"{time.perf_counter() - t:.2f} s", flush=True)
    keys = jax.random.split(jax.random.key(0), args.seeds_memory)
    carry, key = init(keys), jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    for donate in ("all-except-first", "all"):
        vmapped = eqx.filter_vmap(compiled.advance, in_axes=(0, 0, None))
        m = eqx.filter_jit(vmapped, donate=donate).lower(carry, key, chunk).compile().compiled.memory_analysis()
        print(f"{args.seeds_memory} seeds, donate={donate!r} ({'carry donated, as compiled_run' if donate == 'all' else 'carry not donated'}): "
              f"XLA plans arguments {m.argument_size_in_bytes / 2**20:.0f} MiB, outputs {m.output_size_in_bytes / 2**20:.0f}, "
              f"aliased {m.alias_size_in_bytes / 2**20:.0f}, temporaries {m.temp_size_in_bytes / 2**20:.0f}", flush=True)


# --- CLI -----------------------------------------------------------------------------------------

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring (head -n 70 benchmarks/sac.py) for the method.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--total-steps", type=int, default=20_000, help="env steps per run (default 20,000)")
        p.add_argument("--learning-starts", type=int, default=1_000, help="uniform-random warm-up steps (default 1,000)")

    p = sub.add_parser("side-by-side", help="SB3, SBX, reparam host and compiled loops, interleaved per seed")
    common(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--sb3-omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "default"],
                   help="OMP_WAIT_POLICY of the SB3 (torch) process (default PASSIVE: on a shared machine torch's "
                        "spinning OpenMP threads can slow SB3 several-fold; 'default' leaves the variable unset)")
    p.add_argument("--out", default=str(RESULTS / "sac_side_by_side.json"))
    p.set_defaults(func=side_by_side)

    p = sub.add_parser("one", help="(internal) one contender, one seed")
    common(p)
    p.add_argument("--contender", choices=CONTENDERS, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--json", required=True)
    p.set_defaults(func=one)

    p = sub.add_parser("scaling", help="compiled loop, K seeds vmapped, training-phase throughput")
    common(p)
    p.add_argument("--num-seeds", type=int, nargs="+", default=[1, 8, 64, 256])
    p.add_argument("--timed-steps", type=int, nargs="+", default=None,
                   help=f"env steps per timed chunk, one value or one per seed count (default {DEFAULT_TIMED_STEPS})")
    p.add_argument("--chunks", type=int, default=3, help="timed chunks per seed count (the median is reported)")
    p.add_argument("--out", default=str(RESULTS / "sac_scaling.json"))
    p.set_defaults(func=scaling)

    p = sub.add_parser("scaling-one", help="(internal) one seed count")
    common(p)
    p.add_argument("--seeds-one", type=int, required=True)
    p.add_argument("--timed-steps-one", type=int, required=True)
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--json", required=True)
    p.set_defaults(func=scaling_one)

    p = sub.add_parser("flops", help="FLOPs per update, time per update, matmul peak")
    p.add_argument("--iterations", type=int, default=300, help="timed update calls (default 300)")
    p.add_argument("--scan-length", type=int, default=100, help="updates per scanned call (default 100)")
    p.add_argument("--out", default=str(RESULTS / "sac_flops.json"))
    p.set_defaults(func=flops)

    p = sub.add_parser("diagnose", help="compiled loop: warm-up cost under vmap, carry donation and memory")
    common(p)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seeds-memory", type=int, default=64)
    p.set_defaults(func=diagnose)

    p = sub.add_parser("table", help="print the tables of a results JSON")
    p.add_argument("json")
    p.set_defaults(func=lambda a: print({"side-by-side": side_by_side_tables, "scaling": scaling_table,
                                         "flops": flops_table}[json.loads(Path(a.json).read_text())["kind"]](
                                             json.loads(Path(a.json).read_text()))))
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
