"""`reparam diffusion`: tiny runs on a toy, binarized digits (conditional, guided) and 17-level digits
write the final metrics (test bound and terms, ODE NLL, bits/dim) and pictures; a killed run resumes
exactly; a short toy training really lowers the bound; bad settings fail in one line."""

from __future__ import annotations

import json

import equinox as eqx
import numpy as np
import pytest

from reparam.cli import main
from reparam.commands import diffusion as command
from reparam.commands.diffusion import DiffusionCommand
from reparam.commands.diffusion import main as run
from reparam.runs import RunKeys

pytestmark = pytest.mark.usefixtures("as_users_run_it")

FINAL = {"test_bound", "test_prior", "test_diffusion", "test_decoder", "test_ode_nll"}
TIMING = ("examples_per_s", "eval_seconds", "sampling_seconds")
TOY = dict(
    data="8gaussians",
    steps=20,
    epochs=3,
    train_size=2000,
    test_size=200,
    hidden_sizes=(64, 64),
    embedding_dim=16,
    batch_size=100,
    num_samples=200,
    ode_steps=3,
    sampler="ddim",
    sample_steps=10,
)


def rows_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_toy_run_writes_its_metrics_and_pictures(tmp_path):
    out = tmp_path / "toy"
    args = ["diffusion", "--out", str(out)]
    for name, value in TOY.items():
        flag = "--" + name.replace("_", "-")
        args += [flag, *map(str, value)] if isinstance(value, tuple) else [flag, str(value)]
    assert main(args) == 0
    for name in ("samples.png", "trajectory.png", "bound_terms.png", "model.eqx", "metrics.csv", "checkpoint.eqx"):
        assert (out / name).exists(), name
    rows = rows_of(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 3]
    assert {"train_loss", "train_mse_eps", "test_loss_elbo"} <= set(rows[0])
    final = rows[-1]
    assert FINAL <= set(final) and {"sample_mmd", "noise_floor_mmd", "sample_sliced_w", "test_true_nll"} <= set(final)
    assert final["test_ode_step_gap"] >= 0 and (final["ode_steps"], final["ode_check_steps"]) == (3, 1)
    parts = final["test_prior"] + final["test_diffusion"] + final["test_decoder"]
    assert final["test_bound"] == pytest.approx(parts, rel=1e-5)
    assert final["test_prior"] >= 0 and final["test_diffusion"] >= 0
    assert final["distance_points"] == 200


def test_killed_run_resumes_exactly(tmp_path):
    """Stopped after epoch 1 of 3 and resumed: metrics (timing aside) and the EMA weights equal those
    of the uninterrupted run bit for bit (fresh toy points per epoch come from the run's keys)."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    run(DiffusionCommand(**TOY, out=whole))
    run(DiffusionCommand(**TOY, out=part), stop_after=1)
    assert len(rows_of(part)) == 1
    run(DiffusionCommand(resume=part))
    assert without_timing(rows_of(part)) == without_timing(rows_of(whole))
    assert (part / "model.eqx").read_bytes() == (whole / "model.eqx").read_bytes()


def run_and_untrained_bound(config):
    """Run `config`; return its rows, its data and the mean test bound of its untrained network."""
    rows = run(config)
    keys = RunKeys.from_seed(config.seed)
    data = command.load_data(config, keys.data)
    compiled_config = command.compiled_settings(config)
    compiled = command.programs(compiled_config)
    untrained = eqx.filter(command.make_network(compiled_config, keys.init), eqx.is_inexact_array)
    return rows, data, float(np.mean(compiled.bound(untrained, data.test, keys.final)["total"]))


def test_short_toy_training_lowers_the_bound_well_below_the_untrained_one(tmp_path):
    """Eight Gaussians, T = 20, 600 steps of a 64x64 MLP. The untrained network predicts eps = 0, so
    its denoised mean is z / alpha and its bound is far off (about 950 nats here); trained, the bound
    must fall below 20 nats (about 15 is reached; the true NLL is 2.83, and 20 coarse levels leave
    large KL terms), the per-epoch held-out loss must fall too, and the ODE likelihood must sit above
    the ELBO."""
    config = DiffusionCommand(**{**TOY, "epochs": 30}, out=tmp_path / "r")  # the programs of the tests above
    rows, data, before = run_and_untrained_bound(config)
    after = rows[-1]["test_bound"]
    assert before > 100 and after < 20, (before, after)
    assert rows[-2]["test_loss_elbo"] < rows[0]["test_loss_elbo"]
    # ELBO <= the ODE's log-likelihood on the trained model: its NLL (about 6.4 here), even moved by its
    # Heun error (no more than the gap to half the steps, about 1.3 at these 3 steps), sits below the bound
    final = rows[-1]
    assert final["test_ode_nll"] + final["test_ode_step_gap"] < final["test_bound"], final


@pytest.mark.parametrize("data", ["digits", "digits17"])
def test_digits_runs_write_bits_per_dim_and_class_samples(tmp_path, data):
    out = tmp_path / data
    conditional = data == "digits"
    config = DiffusionCommand(
        data=data,
        schedule="cosine" if conditional else "vdm",
        predict="v" if conditional else "eps",
        steps=10,
        epochs=1,
        hidden_sizes=(16,),
        embedding_dim=8,
        batch_size=300,
        num_samples=20,
        ode_steps=1,
        conditional=conditional,
        guidance=1.0 if conditional else 0.0,
        out=out,
    )
    run(config)
    final = rows_of(out)[-1]
    assert FINAL | {"test_bound_bpd", "test_ode_nll_bpd"} <= set(final)
    assert final["test_bound_bpd"] == pytest.approx(final["test_bound"] / (64 * np.log(2)), rel=1e-6)
    assert (out / "class_samples.png").exists() == conditional
    # a bound on a discrete NLL is positive (the decoder term too: a probability is at most 1)
    assert final["test_bound"] > 0 and final["test_decoder"] >= 0


def test_logits_denoiser_starts_at_the_uniform_pixels_bound_and_learns_what_no_independent_model_can(tmp_path):
    """Binarized digits with --denoiser logits. Untrained, the network's logits are zero (its output
    layer starts at zero), so it is the exact denoiser of independent uniform pixels and its bound
    must sit just above their NLL, 64 ln 2 (by the discretisation of 400 levels: under 1 nat). Forty
    epochs of a 64-wide network must then beat the best independent-pixel model, the per-pixel
    Bernoulli MAP fitted to the same training images: only correlations between pixels get there."""
    config = DiffusionCommand(
        data="digits",
        schedule="vdm",
        log_snr_max=3.0,
        log_snr_min=-6.0,
        steps=50,
        eval_steps=400,
        epochs=40,
        hidden_sizes=(64,),
        embedding_dim=16,
        batch_size=100,
        num_samples=10,
        ode_nll=False,
        denoiser="logits",
        out=tmp_path / "r",
    )
    rows, data, before = run_and_untrained_bound(config)
    assert 64 * np.log(2) < before < 64 * np.log(2) + 1, before
    on = (np.asarray(data.train) + 1) / 2
    p = (on.sum(0) + 1) / (on.shape[0] + 2)
    test = (np.asarray(data.test) + 1) / 2
    independent = -np.mean(np.sum(test * np.log(p) + (1 - test) * np.log1p(-p), axis=1))
    assert rows[-1]["test_bound"] < independent - 2, (rows[-1]["test_bound"], independent)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "mnist"], "unknown --data 'mnist'"),
        (["--schedule", "quadratic"], "unknown --schedule 'quadratic'"),
        (["--sampler", "euler"], "unknown --sampler 'euler'"),
        (["--predict", "score"], "unknown --predict 'score'"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--steps", "10", "--sample-steps", "20"], "--sample-steps 20 exceeds --steps 10"),
        (["--steps", "10", "--eval-steps", "11"], "--eval-steps 11 exceeds --steps 10"),
        (["--conditional"], "--conditional needs class labels"),
        (["--data", "digits", "--guidance", "1"], "needs a value >= 0 and --conditional"),
        (["--data", "digits", "--hidden-sizes", "32", "64"], "share one width"),
        (["--validation-fraction", "0.2"], "--validation-fraction needs --data digits"),
        (["--data", "digits", "--patience", "3"], "--patience needs a value >= 1 and --validation-fraction > 0"),
        (["--data", "digits", "--validation-fraction", "1"], "--validation-fraction must be in [0, 1)"),
        (["--schedule", "cosine", "--log-snr-max", "3"], "set the vdm schedule"),
        (["--data", "digits", "--denoiser", "bits"], "unknown --denoiser 'bits'"),
        (["--denoiser", "logits"], "--denoiser logits needs discrete data"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["diffusion", "--out", str(tmp_path / "x"), *args]) == 2
    said = capsys.readouterr().out
    assert message in " ".join(said.split()) and said.count("\n") == 1, said
    assert not (tmp_path / "x").exists()


def test_vdm_allows_more_sample_steps_than_steps(tmp_path):
    """Continuous time has no fixed levels: --sample-steps above --steps is allowed there."""
    DiffusionCommand(schedule="vdm", steps=10, sample_steps=50, eval_steps=40).check()
    with pytest.raises(ValueError, match="exceeds --steps"):
        DiffusionCommand(schedule="cosine", steps=10, sample_steps=50).check()


DIGITS17 = dict(
    data="digits17",
    schedule="vdm",
    log_snr_max=8.0,
    log_snr_min=-6.0,
    steps=10,
    hidden_sizes=(16,),
    embedding_dim=8,
    batch_size=300,
    learning_rate=3e-2,
    ema_decay=0.5,
    num_samples=10,
    ode_nll=False,
    validation_fraction=0.2,
)


def test_early_stopping_keeps_the_best_ema_weights_and_resumes_exactly(tmp_path):
    """17-level digits, a fifth of the training set held out, patience 2. The final row belongs to the
    epoch with the lowest validation bound and its weights (model.eqx) are bit for bit those of a run
    with the same split stopped at that epoch without early stopping; the run stopped either at the
    epoch limit or `patience` epochs after its best; stopped after epoch 2 and resumed, it repeats the
    whole run exactly (the early-stopping state is checkpointed)."""
    whole, part, plain = tmp_path / "whole", tmp_path / "part", tmp_path / "plain"
    config = dict(DIGITS17, epochs=12, patience=2)
    run(DiffusionCommand(**config, out=whole))
    rows = rows_of(whole)
    epochs, final = rows[:-1], rows[-1]
    best = min(epochs, key=lambda r: r["validation_bound"])
    assert final["epoch"] == best["epoch"] and final["epochs_trained"] == epochs[-1]["epoch"]
    assert final["epochs_trained"] == 12 or final["epochs_trained"] - best["epoch"] == 2
    assert [r["epoch"] for r in epochs] == list(range(1, len(epochs) + 1))
    run(DiffusionCommand(**{**config, "epochs": best["epoch"], "patience": None}, out=plain))
    assert (plain / "model.eqx").read_bytes() == (whole / "model.eqx").read_bytes()
    run(DiffusionCommand(**config, out=part), stop_after=2)
    run(DiffusionCommand(resume=part))
    assert without_timing(rows_of(part)) == without_timing(rows)
    assert (part / "model.eqx").read_bytes() == (whole / "model.eqx").read_bytes()


def test_ode_warnings_flag_an_unconverged_or_far_off_ode_likelihood():
    """The 17-level digits run over-fitted for 3,000 epochs: bound 134 nats on 20 test images, ODE bound
    938 (converged: 931 at 100 steps); the same flow scores training images at their bound. Such a number is
    reported with a warning, as is one whose two step counts disagree; a sound one (the binarized run:
    bound 19.29, ODE 19.76, gap tiny) passes."""
    sound = dict(test_bound=19.29, test_ode_nll=19.76, test_ode_nll_median=19.5, test_ode_step_gap=0.01)
    sound.update(ode_steps=25, ode_check_steps=12)
    assert command.ode_warnings(sound) == [] and command.ode_warnings({"test_bound": 1.0}) == []
    far = {**sound, "test_bound": 133.9, "test_ode_nll": 938.3, "test_ode_nll_median": 233.3}
    (said,) = command.ode_warnings(far)
    assert "far above the bound" in said and "--patience" in said
    (said,) = command.ode_warnings({**sound, "test_ode_step_gap": 0.5})
    assert "not converged" in said and "25 and 12 Heun steps" in said
    config = DiffusionCommand(**{**DIGITS17, "ode_nll": True})
    row = {**far, "test_prior": 0.06, "test_diffusion": 133.0, "test_decoder": 0.8}
    row.update(test_bound_bpd=3.0, test_ode_nll_bpd=21.1)
    assert any(line.startswith("warning: ODE NLL 938.3") for line in command.summary(config, row))
