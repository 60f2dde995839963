"""Traces carrying hostile strings, and readers of a report's parts."""

from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import replace

from evolens.trace import Trace

EVIL = "<script>alert(1)</script>"
NASTY = [
    "</script><!--",
    "\u2028",
    "\u2029",
    '" onmouseover="alert(2)',
    "&amp;",
    "<img src=x onerror=alert(3)>",
]


def hostile(trace: Trace, *, item_id: str = "x</script><!--\u2028") -> Trace:
    """A copy of ``trace`` whose token 1 is ``<script>alert(1)</script>`` (also in the vocabulary, so it shows in
    the logit-lens grid and the candidates), with hostile prompt, item id and other tokens."""
    tokens = list(trace.tokens)
    tokens[1] = EVIL
    for i, nasty in enumerate(NASTY[: max(0, len(tokens) - 2)]):
        tokens[i + 2] = nasty
    vocab = dict(trace.vocab)
    vocab[int(trace.generated_ids[1])] = EVIL
    return replace(trace, tokens=tokens, vocab=vocab, prompt=EVIL + " " + NASTY[0], item_id=item_id)


def data_block(html: str) -> dict:
    """The report's data (plain JSON, or gzip-compressed JSON in base64)."""
    blocks = re.findall(
        r'<script type="application/(json|octet-stream)" id="evolens-data"([^>]*)>(.*?)</script>', html, re.S
    )
    assert len(blocks) == 1
    kind, attrs, content = blocks[0]
    if kind == "octet-stream":
        assert 'data-encoding="gzip+base64"' in attrs
        content = gzip.decompress(base64.b64decode(content)).decode("utf-8")
    return json.loads(content)


def script_blocks(html: str) -> list[str]:
    """Everything between <script ...> and </script> (what the HTML parser treats as script content)."""
    return re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S | re.I)


def synthetic_analysis(trace: Trace, critical: list[int], mutations: list[list[int]]):
    """A :class:`TraceAnalysis` of ``trace`` with the given stage critical layers (-1: none) and mutation layers;
    the probability-based critical layer is one layer earlier, the JSD-based one equal (known answers for the
    report, independent of the tiny model's flat profiles)."""
    import numpy as np

    from evolens.analysis import DetectorParams, TraceAnalysis
    from evolens.analysis.detectors import Mutation

    n = trace.n_steps
    assert len(critical) == n and len(mutations) == n
    crit = np.array(critical, dtype=np.int64)
    top1 = trace.metrics.topk_ids[..., 0]
    muts = [
        [Mutation(m, 0.25, 6.5, True, True, int(top1[m - 1, step]), int(top1[m, step])) for m in layers]
        for step, layers in enumerate(mutations)
    ]
    return TraceAnalysis(
        item_id=trace.item_id,
        n_layers=trace.n_layers,
        params=DetectorParams(),
        tokens=list(trace.tokens),
        token_ids=trace.generated_ids.numpy().astype(np.int64),
        is_eos=np.zeros(n, dtype=bool),
        critical_layer_prob=np.where(crit > 0, crit - 1, crit),
        critical_layer_jsd=crit.copy(),
        critical_layer=crit,
        mutations=muts,
        rapid_jsd=np.full(n, np.nan),
        plateau_jsd=np.full(n, np.nan),
    )
