"""Data: image datasets as flat grey levels in [0, 1], binarization, grey levels and dequantization,
2-D toy densities, and on-device epoch batches of pytrees."""

from .batching import (
    DIGITS_LEVELS,
    binarize_dynamic,
    binarize_static,
    bits_per_dim,
    dequantize,
    epoch_batches,
    grey_levels,
    num_examples,
    requantize,
)
from .images import Dataset, digits_split, load_dataset, load_digits, load_mnist, read_idx
from .toys import TOY_ENTROPY, TOYS, sample_toy, toy_log_prob

__all__ = [
    "DIGITS_LEVELS",
    "Dataset",
    "TOYS",
    "TOY_ENTROPY",
    "binarize_dynamic",
    "binarize_static",
    "bits_per_dim",
    "dequantize",
    "digits_split",
    "epoch_batches",
    "grey_levels",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "num_examples",
    "read_idx",
    "requantize",
    "sample_toy",
    "toy_log_prob",
]
