"""Tables for Bayesian neural networks: regression and classification data with a train/test split,
standardised on the training part, plus out-of-distribution inputs where the task has them.

    table = load_table("toy-cubic")                         # 20 points, y = x^3 + N(0, 3^2)
    table = load_table("diabetes", split=7, seed=0)         # one of 20 random 90/10 splits
    table = load_table("digits")                            # classes 0-4; x_ood = test images of 5-9
    table = load_table("csv:/data/yacht.csv", target="residuary_resistance")   # a UCI file you have
    table = load_table("csv:/data/wine.csv", target="quality", task="classification")

Nothing here downloads: the toys are generated (seeded), diabetes and digits ship with scikit-learn.

Conventions shared by every table:

- **Features** `x_*` are float32 `(N, D)`, `x = (x_raw - x_mean) / x_scale` with the training part's
  per-feature mean and population standard deviation (ddof 0), so the training inputs have mean 0
  and standard deviation 1 exactly; a feature constant on the training part keeps scale 1 (it is
  only centred). `x_test` and `x_ood` use the same `x_mean`, `x_scale` (stored on the table).
  Exception: `digits` keeps its pixels in [0, 1] (`x_mean = 0`, `x_scale = 1`), because a z-score
  per pixel divides by near-zero standard deviations (of the 748 training images of 0-4, three
  pixels are never lit and two only in a single image): in-distribution test pixels would reach
  z = 27 and out-of-distribution ones z = 77.
- **Regression targets** `y_*` are float32 `(N,)`, `y = (y_raw - y_mean) / y_scale` with the
  training targets' mean and population standard deviation; a model's predictive in standardised
  units maps back with `y_raw = y * y_scale + y_mean` (a density gains `- log y_scale`), and metrics
  are reported in original units (`reparam.models.uncertainty.regression_metrics(..., y_scale=)`).
- **Classification targets** are int32 labels `0..K-1`; `num_classes = K`, `y_mean = 0.0`,
  `y_scale = 1.0`.
- **Splits**: `split` (0..19) and `seed` pick one of `NUM_SPLITS = 20` random 90/10 splits
  (`round(N / 10)` test rows, halves up), drawn by NumPy's frozen legacy generator
  `RandomState([seed, split])`, so a split is the same on every NumPy version. The generated toys use
  the same generator: `split` and `seed` together pick an independent draw of the whole data set.
  `digits` has one fixed split (`split=0`; `seed` is not used).

The tables (`TABLES`):

- `toy-cubic` (Hernandez-Lobato & Adams 2015, probabilistic backpropagation, Figure 1): 20 training
  points `x ~ U[-4, 4]`, `y = x^3 + eps`, `eps ~ N(0, 3^2)`; `x_test`, `y_test`: 1,000 fresh draws of
  the same law; `x_ood`: 1,000 inputs `x ~ U([-6, -4] or [4, 6])` (extrapolation). `toy_grid(table)`
  gives the 200 inputs of the usual picture on `x in [-6, 6]`.
- `toy-gap` ("in-between" uncertainty, Foong et al. 2019, the 1-D data set of their Figure 1 as it is
  reproduced in public code: 100 points, 50 with `x ~ U[-1, -0.7]` and 50 with `x ~ U[0.5, 1]`,
  `y = cos(4 x + 0.8) + eps`, `eps ~ N(0, 0.1^2)`); `x_test`, `y_test`: 1,000 fresh draws, 500 per
  cluster; `x_ood`: 1,000 inputs `x ~ U[-0.7, 0.5]`, the gap between the clusters, where an exact
  posterior is uncertain and mean-field variational inference notoriously is not. `toy_grid(table)`
  covers `x in [-2, 2]`.
- `diabetes`: scikit-learn's bundled `load_diabetes(scaled=False)` (442 patients, 10 raw features,
  target a disease-progression score 25..346), 20 random 90/10 splits (398 / 44 rows).
- `digits`: scikit-learn's 8x8 digits through `reparam.data.load_dataset("digits")` (its fixed
  1500 / 297 split, pixels / 16 in [0, 1], not standardised, see above), trained on classes 0-4:
  `x_train`, `y_train` are the training images of 0-4 (748), `x_test`, `y_test` the test images of
  0-4 (153), `x_ood` the test images of 5-9 (144); `num_classes = 5`.
- `csv:PATH` with `target="COLUMN"`: a comma-separated file with a header row naming the columns and
  numeric cells (the UCI regression files as people keep them); every column but the target is a
  feature. `task="regression"` (default) or `"classification"`; a classification target holds
  integers, whose distinct values in increasing order become the labels `0..K-1`. Read with the
  standard library's `csv`; bad files are one-line errors naming the line and column (file missing,
  no header, non-numeric cell, missing target column, empty or NaN cells, one class, too few rows),
  and no row is ever dropped silently.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

TABLES = ("toy-cubic", "toy-gap", "diabetes", "digits")
TASKS = ("regression", "classification")
NUM_SPLITS = 20
TEST_FRACTION = 0.1
USAGE = f"choose one of {', '.join(TABLES)}, mnist:PATH (IDX folder or .npz), or csv:PATH with target=COLUMN"

TOY_TEST_SIZE = 1000
TOY_OOD_SIZE = 1000
CUBIC_TRAIN_SIZE = 20
CUBIC_RANGE = (-4.0, 4.0)
CUBIC_NOISE = 3.0
CUBIC_OOD_RANGE = (4.0, 6.0)  # |x| in [4, 6]
GAP_CLUSTER_SIZE = 50
GAP_CLUSTERS = ((-1.0, -0.7), (0.5, 1.0))
GAP_NOISE = 0.1
TOY_GRID_RANGE = {"toy-cubic": (-6.0, 6.0), "toy-gap": (-2.0, 2.0)}  # original units
DIGITS_IN_CLASSES = 5  # train on 0..4; 5..9 are out of distribution

CSV_MISSING = frozenset({"", "?", "na", "n/a", "nan", "null", "none"})  # lower-cased cells read as missing
CSV_MAX_LISTED = 5  # missing cells named in the error before "..."


class Table(NamedTuple):
    """A train/test table, standardised on its training part (see the module docstring).

    `x_*` float32 `(N, D)`; `y_*` float32 `(N,)` (regression, standardised) or int32 `(N,)` labels
    `0..num_classes-1` (classification). `y_raw = y * y_scale + y_mean`. `x_ood` holds
    out-of-distribution inputs `(M, D)` standardised like `x_train`, or is None. `x_mean`, `x_scale`
    float32 `(D,)` undo the feature standardisation: `x_raw = x * x_scale + x_mean`.
    """

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    task: str
    num_classes: int
    y_mean: float
    y_scale: float
    x_ood: jax.Array | None
    name: str
    x_mean: jax.Array | None = None
    x_scale: jax.Array | None = None


def load_table(
    name: str, *, split: int = 0, seed: int = 0, target: str | None = None, task: str | None = None
) -> Table:
    """The table `name` (one of `TABLES`, or `"csv:PATH"` with `target=`), split `split` of seed `seed`.

    `split` in `0..NUM_SPLITS-1` and `seed >= 0` pick the random 90/10 split (or, for the toys, the
    draw); `task` is `"regression"` or `"classification"` for a CSV file (default regression) and, if
    given for a built-in table, must be that table's task. Bad input is a one-line ValueError
    (FileNotFoundError for a missing CSV file).
    """
    if not isinstance(name, str):
        raise ValueError(f"load_table: the table name must be a string, got {type(name).__name__}; {USAGE}")
    _check_split(name, split, seed)
    if task is not None and task not in TASKS:
        raise ValueError(f"load_table: task must be one of {', '.join(TASKS)} (or None), got {task!r}")
    if name.startswith("csv:"):
        path = name[len("csv:") :]
        if not path:
            raise ValueError(f"load_table: 'csv:' needs a path, as in csv:/data/file.csv; {USAGE}")
        return _load_csv(Path(path), target=target, task=task or "regression", split=split, seed=seed)
    if name.startswith("mnist:"):
        if target is not None or split != 0:
            raise ValueError(f"load_table: {name} has its own labels and one fixed train/test split")
        if task not in (None, "classification"):
            raise ValueError(f"load_table: {name} is a classification table; task={task!r} does not apply")
        return _mnist(name)
    loaders = {"toy-cubic": _toy_cubic, "toy-gap": _toy_gap, "diabetes": _diabetes, "digits": _digits}
    if name not in loaders:
        raise ValueError(f"load_table: unknown table {name!r}; {USAGE}")
    if target is not None:
        raise ValueError(f"load_table: target= selects a column of a csv:PATH table; {name!r} has its own target")
    if name == "digits" and split != 0:
        raise ValueError(f"load_table: digits has one fixed train/test split; use split=0, not {split}")
    table = loaders[name](split, seed)
    if task is not None and task != table.task:
        raise ValueError(f"load_table: {name} is a {table.task} table; task={task!r} does not apply")
    return table


def toy_grid(table: Table, num: int = 200, *, low: float | None = None, high: float | None = None) -> jax.Array:
    """`num` evenly spaced inputs `(num, 1)` float32 from `low` to `high` (original units), standardised
    like the table's inputs: the x axis of the predictive-band picture of a one-feature table.

    Defaults: `[-6, 6]` for `toy-cubic`, `[-2, 2]` for `toy-gap`; other one-feature tables need `low`
    and `high`. `original_x(table, grid)` gives the grid back in original units for the axis.
    """
    if table.x_mean is None or table.x_scale is None or table.x_train.shape[1] != 1:
        raise ValueError(f"toy_grid: {table.name} needs one input feature and its x_mean, x_scale")
    if low is None and high is None and table.name in TOY_GRID_RANGE:
        low, high = TOY_GRID_RANGE[table.name]
    if low is None or high is None:
        raise ValueError(f"toy_grid: {table.name} has no default range; give low= and high= in original units")
    if not (isinstance(num, int) and num >= 2) or not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"toy_grid: needs an integer num >= 2 and finite low < high, got {num}, {low}, {high}")
    x = np.linspace(low, high, num)[:, None]
    return jnp.asarray((x - np.asarray(table.x_mean, np.float64)) / np.asarray(table.x_scale, np.float64), jnp.float32)


def original_x(table: Table, x: jax.Array) -> jax.Array:
    """Standardised inputs back in original units: `x * x_scale + x_mean`, `(..., D)`."""
    return x * table.x_scale + table.x_mean


def original_y(table: Table, y: jax.Array) -> jax.Array:
    """Standardised regression targets (or predictive means) in original units: `y * y_scale + y_mean`.

    A predictive standard deviation maps with `* y_scale` alone, a log-density with `- log y_scale`.
    """
    return y * table.y_scale + table.y_mean


def _check_split(name: str, split: int, seed: int) -> None:
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or not 0 <= split < NUM_SPLITS:
        raise ValueError(f"load_table: {name}: split must be an integer in 0..{NUM_SPLITS - 1}, got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"load_table: {name}: seed must be an integer in 0..2**32-1, got {seed!r}")


def _rng(split: int, seed: int) -> np.random.RandomState:
    return np.random.RandomState([int(seed), int(split)])


def _split_index(n: int, split: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train, test)` row indices (each sorted) of the random 90/10 split `split` of seed `seed`."""
    num_test = int(math.floor(TEST_FRACTION * n + 0.5))
    order = _rng(split, seed).permutation(n)
    return np.sort(order[num_test:]), np.sort(order[:num_test])


def _standardiser(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature training mean and population standard deviation (1 where a feature is constant)."""
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


def _table(
    name: str,
    task: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_ood: np.ndarray | None = None,
    *,
    num_classes: int = 0,
    standardise_x: bool = True,
) -> Table:
    """Standardise (float64 on the host) on the training part, then cast to float32 / int32."""
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    if standardise_x:
        x_mean, x_scale = _standardiser(x_train)
    else:
        x_mean, x_scale = np.zeros(x_train.shape[1]), np.ones(x_train.shape[1])

    def features(x):
        return None if x is None else jnp.asarray((np.asarray(x, np.float64) - x_mean) / x_scale, jnp.float32)

    if task == "regression":
        y_train, y_test = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
        y_mean, y_scale = float(y_train.mean()), float(y_train.std())
        if not y_scale > 0:
            raise ValueError(f"load_table: {name}: the target is constant ({y_mean:g}) on the training part")
        y_train = jnp.asarray((y_train - y_mean) / y_scale, jnp.float32)
        y_test = jnp.asarray((y_test - y_mean) / y_scale, jnp.float32)
    else:
        y_mean, y_scale = 0.0, 1.0
        y_train, y_test = jnp.asarray(y_train, jnp.int32), jnp.asarray(y_test, jnp.int32)
    return Table(
        x_train=features(x_train),
        y_train=y_train,
        x_test=features(x_test),
        y_test=y_test,
        task=task,
        num_classes=int(num_classes),
        y_mean=y_mean,
        y_scale=y_scale,
        x_ood=features(x_ood),
        name=name,
        x_mean=jnp.asarray(x_mean, jnp.float32),
        x_scale=jnp.asarray(x_scale, jnp.float32),
    )


# --- generated toys --------------------------------------------------------------------------------


def _cubic(rng: np.random.RandomState, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(*CUBIC_RANGE, size=n)
    return x[:, None], x**3 + CUBIC_NOISE * rng.standard_normal(n)


def _toy_cubic(split: int, seed: int) -> Table:
    rng = _rng(split, seed)
    x_train, y_train = _cubic(rng, CUBIC_TRAIN_SIZE)
    x_test, y_test = _cubic(rng, TOY_TEST_SIZE)
    x_ood = rng.choice([-1.0, 1.0], size=TOY_OOD_SIZE) * rng.uniform(*CUBIC_OOD_RANGE, size=TOY_OOD_SIZE)
    return _table("toy-cubic", "regression", x_train, y_train, x_test, y_test, x_ood[:, None])


def _gap(rng: np.random.RandomState, per_cluster: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([rng.uniform(lo, hi, size=per_cluster) for lo, hi in GAP_CLUSTERS])
    return x[:, None], np.cos(4 * x + 0.8) + GAP_NOISE * rng.standard_normal(len(x))


def _toy_gap(split: int, seed: int) -> Table:
    rng = _rng(split, seed)
    x_train, y_train = _gap(rng, GAP_CLUSTER_SIZE)
    x_test, y_test = _gap(rng, TOY_TEST_SIZE // 2)
    x_ood = rng.uniform(GAP_CLUSTERS[0][1], GAP_CLUSTERS[1][0], size=TOY_OOD_SIZE)
    return _table("toy-gap", "regression", x_train, y_train, x_test, y_test, x_ood[:, None])


# --- bundled data ----------------------------------------------------------------------------------


def _diabetes(split: int, seed: int) -> Table:
    from sklearn.datasets import load_diabetes  # imported here: ~1 s, only if used

    bunch = load_diabetes(scaled=False)
    x, y = np.asarray(bunch.data, np.float64), np.asarray(bunch.target, np.float64)
    train, test = _split_index(len(x), split, seed)
    return _table("diabetes", "regression", x[train], y[train], x[test], y[test])


def _digits(split: int, seed: int) -> Table:
    from .images import load_dataset

    data = load_dataset("digits")
    x_train, y_train = np.asarray(data.x_train), np.asarray(data.y_train)
    x_test, y_test = np.asarray(data.x_test), np.asarray(data.y_test)
    seen_train, seen_test = y_train < DIGITS_IN_CLASSES, y_test < DIGITS_IN_CLASSES
    return _table(
        "digits",
        "classification",
        x_train[seen_train],
        y_train[seen_train],
        x_test[seen_test],
        y_test[seen_test],
        x_test[~seen_test],
        num_classes=DIGITS_IN_CLASSES,
        standardise_x=False,
    )


def _mnist(name: str) -> Table:
    """MNIST from the user's files (`reparam.data.load_dataset("mnist:PATH")`): all 10 classes, the
    official 60,000 / 10,000 split, pixels in [0, 1] left as they are (Blundell et al. 2015's setting)."""
    from .images import load_dataset

    data = load_dataset(name)
    labels = np.concatenate([np.asarray(data.y_train), np.asarray(data.y_test)])
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(
            f"load_table: {name} needs labels 0..9 for classification (y_train and y_test); "
            f"found {labels.min()}..{labels.max()} (-1: the file has no labels)"
        )
    return _table(
        name,
        "classification",
        np.asarray(data.x_train),
        np.asarray(data.y_train),
        np.asarray(data.x_test),
        np.asarray(data.y_test),
        num_classes=10,
        standardise_x=False,
    )


# --- CSV files -------------------------------------------------------------------------------------


def _load_csv(path: Path, *, target: str | None, task: str, split: int, seed: int) -> Table:
    where = f"csv:{path}"
    header, cells = _read_csv(path, target)
    t = header.index(target)
    y, x = cells[:, t], np.delete(cells, t, axis=1)
    train, test = _split_index(len(cells), split, seed)
    if min(len(train), len(test)) < 2:
        raise ValueError(
            f"load_table: {where} has {len(cells)} data rows; a 90/10 split needs at least 2 rows in each part "
            "(15 rows or more)"
        )
    num_classes = 0
    if task == "classification":
        fractional = np.flatnonzero(y != np.round(y))
        if fractional.size:
            raise ValueError(
                f"load_table: {where}: a classification target holds integers; column {target!r} has "
                f"{y[fractional[0]]:g} on data row {fractional[0] + 1} (line {fractional[0] + 2})"
            )
        classes, y = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"load_table: {where}: classification target {target!r} has one class ({classes[0]:g}); it needs two"
            )
        num_classes = len(classes)
    return _table(f"csv:{path.name}", task, x[train], y[train], x[test], y[test], num_classes=num_classes)


def _read_csv(path: Path, target: str | None) -> tuple[list[str], np.ndarray]:
    """`(header, cells)`: the column names (one of them `target`, checked before any cell is read) and
    the float64 cells `(rows, columns)` of a CSV file."""
    where = f"csv:{path}"
    if not path.exists():
        raise FileNotFoundError(f"load_table: no such file '{path}' ({where})")
    if not path.is_file():
        raise ValueError(f"load_table: '{path}' is not a file ({where})")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader if row]
    except UnicodeDecodeError:
        raise ValueError(f"load_table: {where} is not a UTF-8 text file") from None
    except csv.Error as error:
        raise ValueError(f"load_table: {where} is not a readable CSV file ({error})") from None
    if not rows:
        raise ValueError(f"load_table: {where} is empty; it needs a header row and numeric rows")
    header = [cell.strip() for cell in rows[0][1]]
    if all(_number(cell) is not None for cell in header):
        raise ValueError(
            f"load_table: {where} has no header row (its first line is all numbers); add a first line naming the "
            "columns, e.g. x1,x2,y"
        )
    hint = " (is the file comma-separated?)" if len(header) == 1 and any(c in header[0] for c in ";\t ") else ""
    for j, column in enumerate(header):
        if not column:
            raise ValueError(f"load_table: {where}: header column {j + 1} has no name{hint}")
        if header.index(column) != j:
            raise ValueError(f"load_table: {where}: column name {column!r} appears twice in the header")
    if target is None:
        raise ValueError(f"load_table: {where} needs target=COLUMN, one of {', '.join(header)}{hint}")
    if target not in header:
        raise ValueError(f"load_table: {where} has no column {target!r}; its columns are {', '.join(header)}{hint}")
    if len(header) < 2:
        raise ValueError(f"load_table: {where} has only the target column {target!r}; it needs feature columns too")
    if len(rows) < 2:
        raise ValueError(f"load_table: {where} has a header but no data rows")
    cells = np.empty((len(rows) - 1, len(header)), np.float64)
    missing: list[tuple[int, list[str]]] = []
    for i, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(
                f"load_table: {where} line {line} has {len(row)} cells but the header has {len(header)} columns"
            )
        gaps = []
        for j, cell in enumerate(row):
            value = _number(cell)
            if value is None and cell.strip().lower() not in CSV_MISSING:
                raise ValueError(
                    f"load_table: {where} line {line}, column {header[j]!r}: {cell.strip()!r} is not a number{hint}"
                )
            if value is None or not math.isfinite(value):
                gaps.append(header[j])
            cells[i, j] = np.nan if value is None else value
        if gaps:
            missing.append((line, gaps))
    if missing:
        items = [f"line {line} column {', '.join(repr(c) for c in gaps)}" for line, gaps in missing]
        listed = "; ".join(items[:CSV_MAX_LISTED]) + ("; ..." if len(items) > CSV_MAX_LISTED else "")
        raise ValueError(
            f"load_table: {where} has {len(missing)} of {len(cells)} data rows with empty, NaN or infinite cells "
            f"({listed}); fill or remove them (no row is dropped silently)"
        )
    return header, cells


def _number(cell: str) -> float | None:
    """The cell as a float (NaN and infinities included), or None if it is not a number."""
    try:
        return float(cell)
    except ValueError:
        return None
