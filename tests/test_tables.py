"""reparam.data.tables: shapes and dtypes, standardisation on the training part, reproducible and
disjoint splits, the digits class split, the toys' laws, CSV files and every one of their errors."""

import numpy as np
import pytest
import scipy.stats
from sklearn.datasets import load_diabetes

from reparam.data import NUM_SPLITS, TABLES, load_dataset, load_table, original_x, original_y, toy_grid


@pytest.fixture(scope="module")
def tables():
    return {name: load_table(name) for name in TABLES}


@pytest.fixture(scope="module")
def diabetes_raw():
    bunch = load_diabetes(scaled=False)
    return np.asarray(bunch.data), np.asarray(bunch.target)


def one_line(excinfo):
    return "\n" not in str(excinfo.value)


# --- every table -----------------------------------------------------------------------------------

EXPECTED = {  # name: (task, D, n_train, n_test, n_ood, num_classes)
    "toy-cubic": ("regression", 1, 20, 1000, 1000, 0),
    "toy-gap": ("regression", 1, 100, 1000, 1000, 0),
    "diabetes": ("regression", 10, 398, 44, None, 0),
    "digits": ("classification", 64, 748, 153, 144, 5),
}


@pytest.mark.parametrize("name", TABLES)
def test_shapes_dtypes_and_fields(tables, name):
    t = tables[name]
    task, d, n_train, n_test, n_ood, k = EXPECTED[name]
    assert (t.name, t.task, t.num_classes) == (name, task, k)
    assert t.x_train.shape == (n_train, d) and t.x_test.shape == (n_test, d)
    assert t.y_train.shape == (n_train,) and t.y_test.shape == (n_test,)
    assert t.x_train.dtype == t.x_test.dtype == np.float32
    assert (t.x_ood is None) if n_ood is None else (t.x_ood.shape == (n_ood, d) and t.x_ood.dtype == np.float32)
    assert t.y_train.dtype == t.y_test.dtype == (np.float32 if task == "regression" else np.int32)
    assert t.x_mean.shape == t.x_scale.shape == (d,)
    for array in (t.x_train, t.y_train, t.x_test, t.y_test):
        assert np.all(np.isfinite(np.asarray(array)))
    assert isinstance(t.y_mean, float) and isinstance(t.y_scale, float) and t.y_scale > 0


@pytest.mark.parametrize("name", ["toy-cubic", "toy-gap", "diabetes"])
def test_regression_tables_are_standardised_on_the_training_part(tables, name):
    t = tables[name]
    x, y = np.asarray(t.x_train, np.float64), np.asarray(t.y_train, np.float64)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-6)
    assert abs(y.mean()) < 1e-6 and abs(y.std() - 1) < 1e-6
    assert abs(float(np.mean(t.y_test))) > 1e-4  # the test part is not re-standardised on itself


def test_diabetes_in_original_units_and_split(tables, diabetes_raw):
    """Training and test rows, back in original units, are the 442 raw rows exactly once each."""
    t = tables["diabetes"]
    x_raw, y_raw = diabetes_raw
    rows = np.concatenate([original_x(t, t.x_train), original_x(t, t.x_test)]).astype(np.float64)
    targets = np.concatenate([original_y(t, t.y_train), original_y(t, t.y_test)]).astype(np.float64)
    index = np.argmin(np.abs(rows[:, None, :] - x_raw[None]).sum(-1), axis=1)
    np.testing.assert_allclose(rows, x_raw[index], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(targets, y_raw[index], rtol=1e-5)
    assert sorted(index) == list(range(442))  # disjoint parts whose union is the data set


def test_digits_trains_on_zero_to_four_with_five_to_nine_out_of_distribution(tables):
    t = tables["digits"]
    data = load_dataset("digits")
    y_train, y_test = np.asarray(data.y_train), np.asarray(data.y_test)
    assert set(np.unique(t.y_train)) == set(np.unique(t.y_test)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(t.x_train, np.asarray(data.x_train)[y_train < 5])
    np.testing.assert_array_equal(t.y_test, y_test[y_test < 5])
    np.testing.assert_array_equal(t.x_ood, np.asarray(data.x_test)[y_test >= 5])  # pixels left in [0, 1]
    assert float(np.min(t.x_ood)) >= 0 and float(np.max(t.x_ood)) <= 1
    assert (t.y_mean, t.y_scale) == (0.0, 1.0)
    np.testing.assert_array_equal(t.x_mean, 0)
    np.testing.assert_array_equal(t.x_scale, 1)


# --- splits ----------------------------------------------------------------------------------------


def test_splits_are_reproducible_distinct_and_seeded(diabetes_raw):
    first = load_table("diabetes", split=3, seed=1)
    again = load_table("diabetes", split=3, seed=1)
    for a, b in zip(first[:4], again[:4], strict=True):
        np.testing.assert_array_equal(a, b)
    x_raw = diabetes_raw[0]

    def test_rows(table):
        rows = np.asarray(original_x(table, table.x_test), np.float64)
        return frozenset(np.argmin(np.abs(rows[:, None, :] - x_raw[None]).sum(-1), axis=1).tolist())

    tests = [test_rows(load_table("diabetes", split=s)) for s in range(NUM_SPLITS)]
    assert all(len(rows) == 44 for rows in tests)
    assert len(set(tests)) == NUM_SPLITS  # 20 distinct splits
    assert test_rows(load_table("diabetes", split=0, seed=1)) != tests[0]


def test_toys_are_reproducible_and_differ_by_split_and_seed():
    a, b = load_table("toy-cubic", split=2, seed=5), load_table("toy-cubic", split=2, seed=5)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    other_split, other_seed = load_table("toy-cubic", split=3, seed=5), load_table("toy-cubic", split=2, seed=6)
    for other in (other_split, other_seed):
        assert not np.allclose(original_x(a, a.x_train), original_x(other, other.x_train))


# --- the toys' laws --------------------------------------------------------------------------------


def test_toy_cubic_law():
    """x ~ U[-4, 4]; y - x^3 ~ N(0, 3^2): on 5 x 1,000 test points, mean and sd within 5 standard errors."""
    xs, residuals = [], []
    for seed in range(5):
        t = load_table("toy-cubic", seed=seed)
        x = np.asarray(original_x(t, t.x_test), np.float64)[:, 0]
        y = np.asarray(original_y(t, t.y_test), np.float64)
        xs.append(x)
        residuals.append(y - x**3)
        train_x = np.asarray(original_x(t, t.x_train), np.float64)[:, 0]
        assert np.all(np.abs(train_x) <= 4) and len(train_x) == 20
        ood = np.abs(np.asarray(original_x(t, t.x_ood))[:, 0])
        assert np.all((ood >= 4 - 1e-4) & (ood <= 6 + 1e-4))
    x, r = np.concatenate(xs), np.concatenate(residuals)
    n = len(r)
    assert abs(r.mean()) < 5 * 3 / np.sqrt(n)
    assert abs(r.std() - 3) < 5 * 3 / np.sqrt(2 * n)
    assert scipy.stats.kstest(x, scipy.stats.uniform(-4, 8).cdf).pvalue > 1e-3
    assert scipy.stats.kstest(r / 3, "norm").pvalue > 1e-3


def test_toy_gap_law():
    t = load_table("toy-gap")
    for x_std, y_std, n in ((t.x_train, t.y_train, 50), (t.x_test, t.y_test, 500)):
        x = np.asarray(original_x(t, x_std), np.float64)[:, 0]
        y = np.asarray(original_y(t, y_std), np.float64)
        left, right = (x >= -1 - 1e-5) & (x <= -0.7 + 1e-5), (x >= 0.5 - 1e-5) & (x <= 1 + 1e-5)
        assert left.sum() == right.sum() == n and np.all(left | right)
        r = y - np.cos(4 * x + 0.8)
        assert abs(r.std() - 0.1) < 5 * 0.1 / np.sqrt(2 * len(r)) + 1e-4
    gap = np.asarray(original_x(t, t.x_ood))[:, 0]
    assert np.all((gap >= -0.7 - 1e-5) & (gap <= 0.5 + 1e-5))


@pytest.mark.parametrize("name, low, high", [("toy-cubic", -6, 6), ("toy-gap", -2, 2)])
def test_toy_grid_covers_the_picture(tables, name, low, high):
    t = tables[name]
    grid = toy_grid(t)
    assert grid.shape == (200, 1) and grid.dtype == np.float32
    x = np.asarray(original_x(t, grid))[:, 0]
    np.testing.assert_allclose(x[[0, -1]], [low, high], atol=1e-5 * high)
    assert np.all(np.diff(x) > 0)
    assert toy_grid(t, 7, low=0, high=1).shape == (7, 1)


def test_toy_grid_errors(tables):
    for call, match in [
        (lambda: toy_grid(tables["diabetes"]), "one input feature"),
        (lambda: toy_grid(tables["toy-cubic"], 1), "num >= 2"),
        (lambda: toy_grid(tables["toy-cubic"], low=1, high=0), "low < high"),
    ]:
        with pytest.raises(ValueError, match=match) as excinfo:
            call()
        assert one_line(excinfo)


# --- CSV files -------------------------------------------------------------------------------------


def write_csv(path, text):
    path.write_text(text)
    return f"csv:{path}"


def numeric_csv(path, n=30, classes=None):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=n), rng.uniform(size=n)
    y = 2 * a - b + 0.1 * rng.normal(size=n) if classes is None else rng.choice(classes, size=n)
    lines = ["a,target,b"] + [f"{ai:.6f},{yi:.6f},{bi:.6f}" for ai, yi, bi in zip(a, y, b, strict=True)]
    return write_csv(path, "\n".join(lines) + "\n"), np.stack([a, b], 1), y


def test_csv_regression_happy_path(tmp_path):
    spec, x_raw, y_raw = numeric_csv(tmp_path / "data.csv")
    t = load_table(spec, target="target", split=4, seed=2)
    assert (t.task, t.num_classes, t.name) == ("regression", 0, "csv:data.csv")
    assert t.x_train.shape == (27, 2) and t.x_test.shape == (3, 2) and t.x_ood is None
    np.testing.assert_allclose(np.asarray(t.x_train).mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(t.x_train).std(0), 1, atol=1e-6)
    rows = np.concatenate([original_x(t, t.x_train), original_x(t, t.x_test)])
    index = np.argmin(np.abs(rows[:, None, :] - x_raw[None]).sum(-1), axis=1)
    assert sorted(index) == list(range(30))
    targets = np.concatenate([original_y(t, t.y_train), original_y(t, t.y_test)])
    np.testing.assert_allclose(targets, y_raw[index], atol=1e-5)
    again = load_table(spec, target="target", split=4, seed=2)
    np.testing.assert_array_equal(t.x_test, again.x_test)
    assert not np.array_equal(t.x_test, load_table(spec, target="target", split=5, seed=2).x_test)


def test_csv_classification_maps_sorted_values_to_labels(tmp_path):
    spec, _, y_raw = numeric_csv(tmp_path / "classes.csv", classes=[7, 3, 11])
    t = load_table(spec, target="target", task="classification")
    assert t.task == "classification" and t.num_classes == 3 and (t.y_mean, t.y_scale) == (0.0, 1.0)
    assert t.y_train.dtype == np.int32
    labels = np.concatenate([t.y_train, t.y_test])
    np.testing.assert_array_equal(np.bincount(labels, minlength=3), [np.sum(y_raw == c) for c in (3, 7, 11)])


def test_csv_reads_quoted_header_blank_lines_and_bom(tmp_path):
    body = "\n".join(f"{i},{i % 3},{2 * i}" for i in range(20))
    spec = write_csv(tmp_path / "q.csv", '\ufeff"x one",x2,"y"\n' + body + "\n\n")
    t = load_table(spec, target="y")
    assert t.x_train.shape == (18, 2)


CSV_ERRORS = [  # (file text or None for no file, load_table keywords, error type, message fragment)
    (None, {"target": "y"}, FileNotFoundError, "no such file"),
    ("", {"target": "y"}, ValueError, "is empty"),
    ("1,2,3\n4,5,6\n", {"target": "y"}, ValueError, "no header row"),
    ("a,y\n" + "1,2\n" * 5 + "1,abc\n" + "1,2\n" * 14, {"target": "y"}, ValueError, r"line 7, column 'y': 'abc'"),
    ("a,b\n" + "1,2\n" * 20, {"target": "y"}, ValueError, r"no column 'y'; its columns are a, b"),
    ("a,y\n" + "1,2\n" * 20, {}, ValueError, r"needs target=COLUMN, one of a, y"),
    (
        "a,b,y\n" + "1,2,3\n" * 3 + "1,,3\n" + "1,2,3\n" * 4 + "nan,2,?\n" + "1,2,3\n" * 10,
        {"target": "y"},
        ValueError,
        r"2 of 19 data rows with empty, NaN or infinite cells \(line 5 column 'b'; line 10 column 'a', 'y'\)",
    ),
    ("a,y\n" + "1,2\n" * 5 + "1,2,3\n" + "1,2\n" * 14, {"target": "y"}, ValueError, "line 7 has 3 cells"),
    ("a,y\n" + "1,2\n" * 14, {"target": "y"}, ValueError, r"14 data rows; a 90/10 split needs at least 2"),
    ("a,y\n" + "".join(f"{i},4\n" for i in range(20)), {"target": "y"}, ValueError, "target is constant"),
    (
        "a,y\n" + "".join(f"{i},1\n" for i in range(20)),
        {"target": "y", "task": "classification"},
        ValueError,
        "has one class",
    ),
    (
        "a,y\n" + "".join(f"{i},{i / 2}\n" for i in range(20)),
        {"target": "y", "task": "classification"},
        ValueError,
        "holds integers",
    ),
    ("a,a,y\n" + "1,2,3\n" * 20, {"target": "y"}, ValueError, "appears twice"),
    ("y\n" + "1\n" * 20, {"target": "y"}, ValueError, "only the target column"),
    (
        "a;y\n" + "1;2\n" * 20,
        {"target": "y"},
        ValueError,
        r"no column 'y'; its columns are a;y \(is the file comma-separated\?\)",
    ),
    ("a,y\n", {"target": "y"}, ValueError, "no data rows"),
]


@pytest.mark.parametrize("text, kwargs, error, match", CSV_ERRORS)
def test_csv_errors_are_one_line(tmp_path, text, kwargs, error, match):
    path = tmp_path / "bad.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(error, match=match) as excinfo:
        load_table(f"csv:{path}", **kwargs)
    assert one_line(excinfo)


def test_csv_folder_and_empty_path(tmp_path):
    for spec, match in [(f"csv:{tmp_path}", "is not a file"), ("csv:", "needs a path")]:
        with pytest.raises(ValueError, match=match) as excinfo:
            load_table(spec, target="y")
        assert one_line(excinfo)


# --- names and options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("mnist", {}, r"unknown table 'mnist'; choose one of toy-cubic, toy-gap, diabetes, digits, mnist:PATH"),
        ("diabetes", {"split": NUM_SPLITS}, r"split must be an integer in 0\.\.19"),
        ("diabetes", {"split": -1}, "split must be"),
        ("diabetes", {"split": True}, "split must be"),
        ("diabetes", {"seed": -3}, "seed must be"),
        ("digits", {"split": 1}, "one fixed train/test split"),
        ("diabetes", {"target": "age"}, "target= selects a column of a csv:PATH table"),
        ("diabetes", {"task": "classification"}, "diabetes is a regression table"),
        ("diabetes", {"task": "ranking"}, "task must be one of regression, classification"),
    ],
)
def test_bad_names_and_options(name, kwargs, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        load_table(name, **kwargs)
    assert one_line(excinfo)
    assert load_table("toy-cubic", task="regression").task == "regression"
