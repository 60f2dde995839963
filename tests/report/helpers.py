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
