"""Data: image datasets as flat grey levels in [0, 1], binarization, and on-device epoch batches."""

from .batching import binarize_dynamic, binarize_static, epoch_batches
from .images import Dataset, digits_split, load_dataset, load_digits, load_mnist, read_idx

__all__ = [
    "Dataset", "binarize_dynamic", "binarize_static", "digits_split", "epoch_batches", "load_dataset",
    "load_digits", "load_mnist", "read_idx",
]
