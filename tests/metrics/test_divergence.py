"""JSD, KL and entropy against direct formulas, and the properties a divergence must have."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evolens.metrics.divergence import entropy_bits, jsd_bits, jsd_paper, kl_bits
from tests.paper_code import paper_js

# Non-uniform distributions: logits drawn over a wide range, so that some entries are tiny and some dominate.
logit_vectors = st.integers(min_value=2, max_value=64).flatmap(
    lambda n: arrays(np.float64, n, elements=st.floats(-30, 30, allow_nan=False, allow_infinity=False))
)


def _logp(logits: np.ndarray) -> torch.Tensor:
    return torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), dim=-1)


def _direct_jsd_bits(p: np.ndarray, q: np.ndarray) -> float:
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@settings(max_examples=200, deadline=None)
@given(logit_vectors, st.data())
def test_jsd_matches_direct_formula_and_is_symmetric_and_bounded(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(arrays(np.float64, a.shape[0], elements=st.floats(-30, 30, allow_nan=False)))
    lp, lq = _logp(a), _logp(b)
    value = float(jsd_bits(lp, lq))
    reference = _direct_jsd_bits(lp.exp().numpy(), lq.exp().numpy())
    assert math.isclose(value, reference, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(value, float(jsd_bits(lq, lp)), rel_tol=1e-12, abs_tol=1e-15)
    assert 0.0 <= value <= 1.0


@settings(max_examples=100, deadline=None)
@given(logit_vectors)
def test_jsd_is_zero_for_equal_distributions(a: np.ndarray) -> None:
    lp = _logp(a)
    assert float(jsd_bits(lp, lp)) == 0.0


@settings(max_examples=100, deadline=None)
@given(logit_vectors, st.integers(0, 63))
def test_jsd_is_positive_for_different_distributions(a: np.ndarray, pick: int) -> None:
    # Change a token whose probability is neither negligible nor all the mass (in [1e-6, 1 - 1e-6]): moving a token
    # of probability e^-39, or the only token with mass, changes the JSD by ~1e-16 bits or less, below what a
    # float64 sum over the vocabulary can resolve.
    p = _logp(a).exp().numpy()
    candidates = np.flatnonzero((p >= 1e-6) & (p <= 1 - 1e-6))
    assume(candidates.size > 0)
    b = a.copy()
    b[candidates[pick % candidates.size]] += 3.0
    lp, lq = _logp(a), _logp(b)
    assert not torch.allclose(lp, lq)
    assert float(jsd_bits(lp, lq)) > 0.0


def test_jsd_is_one_bit_for_disjoint_supports() -> None:
    lp = torch.log(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)).clamp_min(-1e4)
    lq = torch.log(torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)).clamp_min(-1e4)
    assert math.isclose(float(jsd_bits(lp, lq)), 1.0, rel_tol=1e-9)


def test_jsd_broadcasts_over_leading_axes() -> None:
    lp = torch.log_softmax(torch.randn(3, 5, 11, dtype=torch.float64), -1)
    lq = torch.log_softmax(torch.randn(3, 5, 11, dtype=torch.float64), -1)
    full = jsd_bits(lp, lq)
    assert full.shape == (3, 5)
    assert torch.allclose(full[1, 2], jsd_bits(lp[1, 2], lq[1, 2]))


@settings(max_examples=100, deadline=None)
@given(logit_vectors, st.data())
def test_paper_jsd_is_exactly_the_paper_code(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(arrays(np.float64, a.shape[0], elements=st.floats(-30, 30, allow_nan=False)))
    expected = paper_js(torch.as_tensor(a), torch.as_tensor(b))  # the released code's expression, float64
    assert torch.allclose(jsd_paper(_logp(a), _logp(b)), expected, rtol=1e-10, atol=1e-15)


def test_paper_jsd_is_reversed_kl_over_vocab_size_not_eq3() -> None:
    lp = torch.log_softmax(torch.tensor([4.0, 0.0, -2.0, 1.0], dtype=torch.float64), -1)
    lq = torch.log_softmax(torch.tensor([0.0, 3.0, 1.0, -1.0], dtype=torch.float64), -1)
    m = 0.5 * (lp.exp() + lq.exp())
    reversed_kl_nats = 0.5 * (float((m * (m.log() - lp)).sum()) + float((m * (m.log() - lq)).sum())) / 4
    assert math.isclose(float(jsd_paper(lp, lq)), reversed_kl_nats, rel_tol=1e-12)
    assert not math.isclose(float(jsd_paper(lp, lq)), float(jsd_bits(lp, lq)), rel_tol=1e-2)


@settings(max_examples=100, deadline=None)
@given(logit_vectors, st.data())
def test_kl_matches_direct_formula(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(arrays(np.float64, a.shape[0], elements=st.floats(-30, 30, allow_nan=False)))
    lp, lq = _logp(a), _logp(b)
    p, q = lp.exp().numpy(), lq.exp().numpy()
    mask = p > 0
    expected = float(np.sum(p[mask] * (np.log2(p[mask]) - np.log2(q[mask]))))
    assert math.isclose(float(kl_bits(lp, lq)), max(expected, 0.0), rel_tol=1e-8, abs_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(logit_vectors)
def test_entropy_matches_direct_formula(a: np.ndarray) -> None:
    lp = _logp(a)
    p = lp.exp().numpy()
    mask = p > 0
    expected = float(-np.sum(p[mask] * np.log2(p[mask])))
    value = float(entropy_bits(lp))
    assert math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12)
    assert 0.0 <= value <= math.log2(a.shape[0]) + 1e-9


def test_float32_jsd_is_close_to_float64() -> None:
    logits = torch.randn(2, 32000, dtype=torch.float64) * 4
    lp64 = torch.log_softmax(logits, -1)
    lp32 = torch.log_softmax(logits.float(), -1)
    assert abs(float(jsd_bits(lp32[0], lp32[1])) - float(jsd_bits(lp64[0], lp64[1]))) < 1e-5
