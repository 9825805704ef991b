"""Replay buffer: ring-buffer order, sampling over valid rows only, dtypes, jit, donation, scan."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from reparam.rl import ReplayBuffer, Transition, add, add_batch, init_buffer, sample

OBS, ACT = 3, 2


def batch(ids, action_dtype=np.float32):
    """Transitions numbered `ids` (numpy, so building them compiles nothing): every field is a
    function of the number, so a row says which transition it holds; `None` is an unwritten row."""
    i = np.array([np.nan if j is None else j for j in ids], np.float32)[:, None]
    rows = Transition(
        obs=np.repeat(i, OBS, axis=1),
        action=np.repeat(i, ACT, axis=1),
        reward=10 * i[:, 0],
        next_obs=np.repeat(i + 0.5, OBS, axis=1),
        terminated=i[:, 0] % 2,
    )
    rows = jax.tree.map(lambda x: np.nan_to_num(x, nan=0.0), rows)  # unwritten rows are zeros
    return rows._replace(action=rows.action.astype(action_dtype))


def transition(i, action_dtype=np.float32):
    return jax.tree.map(lambda x: x[0], batch([i], action_dtype))


def assert_rows(buffer, ids):
    """Rows 0..len(ids)-1 of `buffer` hold exactly transitions `ids`, every field."""
    for name, got, want in zip(Transition._fields, buffer.data, batch(ids), strict=True):
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got[: len(ids)], want, err_msg=name)


def filled(capacity, ids):
    buffer = init_buffer(transition(0), capacity)
    for i in ids:
        buffer = add(buffer, transition(i))
    return buffer


def assert_buffers_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# -- writing --------------------------------------------------------------------------------------


def test_add_wraps_around_overwriting_the_oldest():
    buffer = filled(5, range(1, 4))
    assert (int(buffer.position), int(buffer.size)) == (3, 3)
    buffer = filled(5, range(7))
    assert_rows(buffer, [5, 6, 2, 3, 4])
    assert (int(buffer.position), int(buffer.size)) == (2, 5)
    assert buffer.position.dtype == buffer.size.dtype == jnp.int32


def test_add_batch_straddling_the_end_wraps_to_row_zero():
    buffer = filled(5, [1, 2, 3])  # position 3
    buffer = add_batch(buffer, batch([10, 11, 12, 13]))
    assert_rows(buffer, [12, 13, 3, 10, 11])  # rows 3, 4, 0, 1; row 2 untouched
    assert (int(buffer.position), int(buffer.size)) == (2, 5)  # size saturates at capacity


def test_add_batch_counts_rows_until_full():
    buffer = add_batch(init_buffer(transition(0), 5), batch([7, 8]))
    assert_rows(buffer, [7, 8, None, None, None])
    assert (int(buffer.position), int(buffer.size)) == (2, 2)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=6))
def test_add_batch_matches_a_reference_ring_buffer(batch_sizes):
    capacity = 4
    rows, position, size, count = [None] * capacity, 0, 0, 1
    buffer = init_buffer(transition(0), capacity)
    for k in batch_sizes:
        ids = list(range(count, count + k))
        count += k
        buffer = jax.jit(add_batch)(buffer, batch(ids))  # jit: one compile per k, not one per op
        for i in ids:
            rows[position] = i
            position, size = (position + 1) % capacity, min(size + 1, capacity)
    assert_rows(buffer, rows)
    assert (int(buffer.position), int(buffer.size)) == (position, size)


def test_add_batch_larger_than_capacity_raises():
    buffer = init_buffer(transition(0), 3)
    with pytest.raises(ValueError, match="batch of 4 .* capacity 3"):
        add_batch(buffer, batch(range(4)))
    with pytest.raises(ValueError, match="batch of 4 .* capacity 3"):
        jax.jit(add_batch)(buffer, batch(range(4)))


def test_add_rejects_wrong_shapes_and_unsafe_dtypes():
    buffer = init_buffer(transition(0), 3)
    with pytest.raises(ValueError, match=r"\.obs has shape \(1, 4\)"):
        add(buffer, transition(1)._replace(obs=jnp.zeros(4, jnp.float32)))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        add_batch(buffer, batch([1, 2])._replace(reward=jnp.zeros(3, jnp.float32)))
    int_actions = init_buffer(transition(0, np.int32), 3)
    with pytest.raises(ValueError, match="float32 values in a int32 field"):
        add(int_actions, transition(1))


# -- dtypes and shapes ----------------------------------------------------------------------------


def test_dtypes_and_shapes_are_kept():
    # Image observations, discrete actions; the other tests store float32 everywhere.
    example = transition(0, np.int32)._replace(obs=np.zeros((2, 4, 4), np.uint8))
    example = jax.tree.map(jnp.asarray, example)
    buffer = init_buffer(example, 6)
    # A float64 reward and a Python float are cast to the example's dtypes, not promoted.
    step = example._replace(reward=jnp.asarray(1.5, jnp.float64), terminated=1.0)
    pair = jax.tree.map(lambda x: jnp.stack([x, x]), example)

    @jax.jit  # one compile for the three calls
    def write_and_sample(buffer):
        buffer = add_batch(add(buffer, step), pair)
        return buffer, sample(buffer, jax.random.key(0), 5)

    written, out = write_and_sample(buffer)
    for rows, n in ((buffer.data, 6), (written.data, 6), (out, 5)):
        for leaf, x in zip(rows, example, strict=True):
            assert leaf.shape == (n,) + x.shape and leaf.dtype == x.dtype
    assert written.data.reward[0] == 1.5 and written.data.terminated[0] == 1.0


@pytest.mark.parametrize("capacity", [0, -3])
def test_init_buffer_rejects_capacity_below_one(capacity):
    with pytest.raises(ValueError, match=f"capacity must be at least 1, got {capacity}"):
        init_buffer(transition(0), capacity)


def test_init_buffer_rejects_a_float_capacity():
    with pytest.raises(TypeError, match=r"int\(1000000.0\)"):
        init_buffer(transition(0), 1e6)


# -- sampling -------------------------------------------------------------------------------------


def test_sample_draws_uniformly_from_valid_rows_only():
    buffer = filled(10, [1, 2, 3])
    n = 1000
    out = jax.jit(sample, static_argnames="batch_size")(buffer, jax.random.key(0), batch_size=n)
    ids = np.asarray(out.obs[:, 0])
    assert set(ids.tolist()) <= {1.0, 2.0, 3.0}  # never a zero row
    for got, want in zip(out, batch(ids), strict=True):  # the fields of one draw come from one row
        np.testing.assert_array_equal(got, want)
    counts = np.bincount(ids.astype(int), minlength=4)[1:]
    assert counts.sum() == n
    chi2 = ((counts - n / 3) ** 2 / (n / 3)).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-3, df=2), counts


def test_sample_from_an_empty_buffer_raises_eagerly():
    with pytest.raises(ValueError, match="empty"):
        sample(init_buffer(transition(0), 4), jax.random.key(0), 2)


# -- jit, donation, scan --------------------------------------------------------------------------


def test_jit_and_donation_match_eager():
    eager = filled(5, range(7))
    jitted = jax.jit(add)
    donating = jax.jit(add, donate_argnums=0)
    a, b = init_buffer(transition(0), 5), init_buffer(transition(0), 5)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Some donated buffers were not usable")
        for i in range(7):
            a, b = jitted(a, transition(i)), donating(b, transition(i))
    assert_buffers_equal(a, eager)
    assert_buffers_equal(b, eager)


@pytest.mark.parametrize("write", ["add", "add_batch"])
def test_donated_writes_alias_the_buffer_instead_of_copying_it(write):
    buffer = init_buffer(transition(0), 10_000)
    fn, arg = (add, transition(1)) if write == "add" else (add_batch, batch([1, 2, 3]))
    stats_ = jax.jit(fn, donate_argnums=0).lower(buffer, arg).compile().memory_analysis()
    if stats_ is None:
        pytest.skip("this backend reports no memory analysis")
    data_bytes = sum(x.nbytes for x in jax.tree.leaves(buffer.data))
    assert stats_.alias_size_in_bytes >= data_bytes  # outputs reuse the donated arrays
    assert stats_.temp_size_in_bytes < data_bytes // 100  # and no full-size temporary


def test_scan_of_adds_matches_eager_adds():
    steps = batch(range(100))

    @jax.jit
    def fill(buffer):
        return jax.lax.scan(lambda b, t: (add(b, t), None), buffer, steps)[0]

    empty = init_buffer(transition(0), 32)
    scanned = fill(empty)
    assert_buffers_equal(scanned, filled(32, range(100)))
    assert isinstance(scanned, ReplayBuffer)
    assert (int(scanned.position), int(scanned.size)) == (100 % 32, 32)


def test_make_transition_casts_to_float32_and_keeps_termination_only():
    """Both loops store what `make_transition` builds: every field float32, the true next observation
    as given, `terminated` 1.0 for a termination only (a truncation is stored as 0.0 by the caller)."""
    from reparam.rl.replay import make_transition

    t = make_transition(
        np.ones((2, OBS)),
        np.zeros((2, ACT), np.float32),
        np.array([1.0, -1.0]),
        np.full((2, OBS), 5.0),
        np.array([True, False]),
    )
    assert all(x.dtype == jnp.float32 for x in t)
    np.testing.assert_array_equal(t.terminated, [1.0, 0.0])
    np.testing.assert_array_equal(t.next_obs, np.full((2, OBS), 5.0))
