"""Data: image datasets as flat grey levels in [0, 1], binarization, grey levels and dequantization,
2-D toy densities, on-device epoch batches of pytrees, and train/test tables for Bayesian neural
networks (regression and classification, standardised, with out-of-distribution inputs); the energy
targets U1-U4 of Rezende & Mohamed (2015) on a box, with log Z by quadrature."""

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
from .energies import (
    BOX,
    ENERGIES,
    check_energy_name,
    energy,
    in_box,
    log_normaliser,
    plane_target_log_prob,
    target_log_prob,
    to_box,
)
from .images import Dataset, digits_split, load_dataset, load_digits, load_mnist, load_mnist5k, mnist5k_split, read_idx
from .tables import NUM_SPLITS, TABLES, Table, load_table, original_x, original_y, toy_grid
from .toys import TOY_ENTROPY, TOYS, sample_toy, toy_log_prob

__all__ = [
    "BOX",
    "ENERGIES",
    "check_energy_name",
    "energy",
    "in_box",
    "log_normaliser",
    "plane_target_log_prob",
    "target_log_prob",
    "to_box",
    "DIGITS_LEVELS",
    "Dataset",
    "NUM_SPLITS",
    "TABLES",
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
    "load_mnist5k",
    "mnist5k_split",
    "load_table",
    "num_examples",
    "original_x",
    "original_y",
    "read_idx",
    "requantize",
    "sample_toy",
    "Table",
    "toy_grid",
    "toy_log_prob",
]
