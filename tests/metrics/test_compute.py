"""Chunked metric computation against a plain per-(layer, step) float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from evolens.errors import SettingsError
from evolens.lens import LogitLens
from evolens.metrics import auto_chunk_steps, compute_layer_metrics, track_tokens
from evolens.metrics.compute import chunk_bytes_per_step, device_chunk_budget, resolve_strategy
from evolens.models.roles import LogitTransform
from evolens.testing.dispatch import DispatchCounter

N_LAYERS, N_STEPS, D, VOCAB = 5, 7, 16, 40


def make_lens(
    mode: str = "logit", dtype: torch.dtype = torch.float32, softcap: float | None = None, vocab: int = VOCAB
) -> LogitLens:
    torch.manual_seed(1)
    norm = nn.RMSNorm(D, eps=1e-6).to(dtype)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    head = nn.Linear(D, vocab, bias=False).to(dtype)
    with torch.no_grad():
        head.weight.normal_(0, 1.0)
    return LogitLens(norm, head, LogitTransform(softcap=softcap), N_LAYERS, mode)  # type: ignore[arg-type]


def make_states(dtype: torch.dtype = torch.float32, n_steps: int = N_STEPS, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # growing scale across layers, as residual streams do
    scale = torch.linspace(0.5, 4.0, N_LAYERS + 1).view(-1, 1, 1)
    return (torch.randn(N_LAYERS + 1, n_steps, D, generator=g) * scale).to(dtype)


def reference(states: torch.Tensor, lens: LogitLens, targets: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    """Everything computed one (layer, step) at a time in float64 numpy, straight from the definitions."""
    norm = lens.final_norm.double()
    head = lens.lm_head.double()
    out: dict[str, np.ndarray] = {
        name: np.zeros((N_LAYERS + 1, N_STEPS)) for name in ("logprob", "rank", "entropy", "kl_last")
    }
    out["jsd"] = np.zeros((N_LAYERS, N_STEPS))
    out["jsd_paper"] = np.zeros((N_LAYERS, N_STEPS))
    out["topk"] = np.zeros((N_LAYERS + 1, N_STEPS, k), dtype=np.int64)
    probs = np.zeros((N_LAYERS + 1, N_STEPS, VOCAB))
    with torch.no_grad():
        for layer in range(N_LAYERS + 1):
            for step in range(N_STEPS):
                x = states[layer, step].double()
                if lens.mode == "logit" or layer == N_LAYERS:
                    x = norm(x)
                logits = head(x)
                logits = lens.transform.apply(logits)
                p = torch.softmax(logits, -1).numpy()
                probs[layer, step] = p
    for layer in range(N_LAYERS + 1):
        for step in range(N_STEPS):
            p = probs[layer, step]
            t = int(targets[step])
            out["logprob"][layer, step] = np.log(p[t])
            out["rank"][layer, step] = 1 + int(np.sum(p > p[t]))
            out["entropy"][layer, step] = -np.sum(p * np.log2(p))
            last = probs[N_LAYERS, step]
            out["kl_last"][layer, step] = np.sum(last * np.log2(last / p))
            out["topk"][layer, step] = np.argsort(-p, kind="stable")[:k]
            if layer < N_LAYERS:
                q = probs[layer + 1, step]
                m = 0.5 * (p + q)
                out["jsd"][layer, step] = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))
                out["jsd_paper"][layer, step] = 0.5 * (
                    np.mean(m * np.log(m / p)) + np.mean(m * np.log(m / q))
                )
    return out


@pytest.mark.parametrize("mode", ["logit", "paper"])
@pytest.mark.parametrize("chunk_steps", [1, 3, None])
def test_chunked_metrics_match_float64_reference(mode: str, chunk_steps: int | None) -> None:
    lens = make_lens(mode)
    states = make_states()
    targets = torch.tensor([3, 7, 7, 0, 39, 12, 5])
    m = compute_layer_metrics(states, lens, targets, k=4, tracked_ids=[1, 39], chunk_steps=chunk_steps)
    ref = reference(states, lens, targets, k=4)
    assert m.lens_mode == mode and m.vocab_size == VOCAB
    np.testing.assert_allclose(m.target_logprobs.numpy(), ref["logprob"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(m.target_ranks.numpy(), ref["rank"])
    np.testing.assert_allclose(m.entropy_bits.numpy(), ref["entropy"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.kl_to_last_bits.numpy(), ref["kl_last"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(m.jsd_bits.numpy(), ref["jsd"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(m.jsd_paper.numpy(), ref["jsd_paper"], rtol=1e-3, atol=1e-8)
    np.testing.assert_array_equal(m.topk_ids.numpy(), ref["topk"])
    assert m.tracked_logprobs.shape == (N_LAYERS + 1, N_STEPS, 2)
    # tracked id 39 is the target at step 4: both views agree
    assert torch.allclose(m.tracked_logprobs[:, 4, 1], m.target_logprobs[:, 4])
    assert torch.equal(m.tracked_ranks[:, 4, 1], m.target_ranks[:, 4])


def test_chunking_gives_identical_results() -> None:
    lens = make_lens()
    states = make_states()
    targets = torch.arange(N_STEPS)
    whole = compute_layer_metrics(states, lens, targets, k=5, chunk_steps=N_STEPS)
    for chunk in (1, 2, 4):
        part = compute_layer_metrics(states, lens, targets, k=5, chunk_steps=chunk)
        for name, value in whole.tensors().items():
            other = getattr(part, name)
            if not name.startswith("candidate"):
                assert torch.allclose(value.float(), other.float(), atol=1e-6), name
        # the padding width may differ between chunkings; the real entries may not
        for step in range(N_STEPS):
            real = whole.candidate_ids[step] >= 0
            n_real = int(real.sum())
            assert torch.equal(part.candidate_ids[step, :n_real], whole.candidate_ids[step, real])
            assert bool((part.candidate_ids[step, n_real:] < 0).all())
            assert torch.allclose(
                part.candidate_logprobs[:, step, :n_real], whole.candidate_logprobs[:, step, real]
            )


def test_candidates_are_the_union_of_top1_tokens_with_their_curves() -> None:
    lens = make_lens()
    states = make_states()
    m = compute_layer_metrics(states, lens, torch.zeros(N_STEPS, dtype=torch.long), k=3)
    for step in range(N_STEPS):
        expected = list(dict.fromkeys(m.topk_ids[:, step, 0].tolist()))
        got = [i for i in m.candidate_ids[step].tolist() if i >= 0]
        assert got == expected
        for j, token in enumerate(got):
            logits = lens.logits(states[:, step : step + 1])
            ref = torch.log_softmax(logits, -1)[:, 0, token]
            assert torch.allclose(m.candidate_logprobs[:, step, j], ref, atol=1e-5)
        padded = m.candidate_ids[step] < 0
        assert bool(torch.isinf(m.candidate_logprobs[:, step, padded]).all())


def test_softcap_is_applied_by_the_lens() -> None:
    lens = make_lens(softcap=2.0)
    logits = lens.logits(make_states())
    assert float(logits.abs().max()) <= 2.0
    targets = torch.zeros(N_STEPS, dtype=torch.long)
    m = compute_layer_metrics(make_states(), lens, targets, k=2)
    ref = reference(make_states(), lens, targets, k=2)
    np.testing.assert_allclose(m.target_logprobs.numpy(), ref["logprob"], rtol=1e-4, atol=1e-4)


def test_track_tokens_matches_tracked_metrics() -> None:
    lens = make_lens()
    states = make_states()
    ids = torch.tensor([2, 9])
    m = compute_layer_metrics(states, lens, torch.zeros(N_STEPS, dtype=torch.long), tracked_ids=ids)
    logprobs, token_ranks = track_tokens(states, lens, ids, chunk_steps=2)
    assert torch.allclose(logprobs, m.tracked_logprobs)
    assert torch.equal(token_ranks, m.tracked_ranks)


def test_auto_chunk_respects_the_budget() -> None:
    steps = auto_chunk_steps(33, 32000, 512 * 2**20)
    assert 2 * 33 * steps * 32000 * 4 <= 512 * 2**20
    assert auto_chunk_steps(33, 32000, 1) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "top-k"),
        ({"chunk_steps": 0}, "chunk_steps"),
        ({"tracked_ids": [VOCAB]}, "tracked token ids"),
    ],
)
def test_bad_settings_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        compute_layer_metrics(make_states(), make_lens(), torch.zeros(N_STEPS, dtype=torch.long), **kwargs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(SettingsError, match="target_ids"):
        compute_layer_metrics(make_states(), make_lens(), torch.zeros(3, dtype=torch.long))
    with pytest.raises(SettingsError, match="states must be"):
        compute_layer_metrics(make_states()[0], make_lens(), torch.zeros(N_STEPS, dtype=torch.long))


def assert_same_metrics(a, b, atol: float = 1e-6) -> None:
    """Equal ids, ranks and candidates; float metrics equal to float32 rounding."""
    for name, value in a.tensors().items():
        other = getattr(b, name)
        assert value.shape == other.shape, name
        if value.is_floating_point():
            assert torch.allclose(value, other, atol=atol, rtol=1e-5), name
        else:
            assert torch.equal(value, other), name


@pytest.mark.parametrize("mode", ["logit", "paper"])
@pytest.mark.parametrize("chunk_steps", [1, 3, None])
def test_whole_chunk_strategy_equals_the_blocked_one(mode: str, chunk_steps: int | None) -> None:
    lens = make_lens(mode)
    states = make_states()
    targets = torch.tensor([3, 7, 7, 0, 39, 12, 5])
    args = {"k": 4, "tracked_ids": [1, 39], "chunk_steps": chunk_steps}
    blocked = compute_layer_metrics(states, lens, targets, strategy="blocked", **args)
    whole = compute_layer_metrics(states, lens, targets, strategy="whole", **args)
    assert_same_metrics(blocked, whole)
    ref = reference(states, lens, targets, k=4)
    np.testing.assert_allclose(whole.jsd_bits.numpy(), ref["jsd"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(whole.jsd_paper.numpy(), ref["jsd_paper"], rtol=1e-3, atol=1e-8)


def test_strategies_resolve_by_device() -> None:
    assert resolve_strategy("auto", torch.device("cpu")) == "blocked"
    assert resolve_strategy("auto", torch.device("cuda")) == "whole"
    assert resolve_strategy("whole", torch.device("cpu")) == "whole"
    with pytest.raises(SettingsError, match="unknown metrics strategy"):
        resolve_strategy("fast", torch.device("cpu"))
    with pytest.raises(SettingsError, match="unknown metrics strategy"):
        compute_layer_metrics(
            make_states(), make_lens(), torch.zeros(N_STEPS, dtype=torch.long), strategy="x"
        )


def test_whole_chunk_budget_counts_every_temporary() -> None:
    per_step = chunk_bytes_per_step(33, 32000, "whole")
    assert per_step > chunk_bytes_per_step(33, 32000, "blocked")
    steps = auto_chunk_steps(33, 32000, 2**30, "whole")
    assert steps * per_step <= 2**30 < (steps + 1) * per_step
    assert device_chunk_budget(torch.device("cpu")) == 512 * 2**20  # free memory unknown: the CPU default


def _ops(n_steps: int, strategy: str) -> int:
    lens = make_lens(vocab=2**15)  # the blocked strategy reduces 8 steps at a time at this vocabulary
    states = make_states(n_steps=n_steps)
    targets = torch.zeros(n_steps, dtype=torch.long)
    with DispatchCounter() as counter:
        compute_layer_metrics(states, lens, targets, k=3, chunk_steps=n_steps, strategy=strategy)
    return counter.compute_ops


def test_whole_chunk_operations_do_not_grow_with_the_steps() -> None:
    # one chunk either way: the whole-chunk strategy dispatches the same operations for 8 and 64 steps, while
    # the blocked one dispatches a block's worth per 8 steps (launch-bound on a GPU)
    assert _ops(8, "whole") == _ops(64, "whole")
    assert _ops(64, "blocked") > 4 * _ops(8, "blocked")
