"""Escaping of untrusted strings (model outputs, dataset fields) for the two places a report puts them: HTML text
and attributes, and the JSON data block inside a ``<script type="application/json">`` element."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import PurePath
from typing import Any

# Inside a <script> element the HTML parser ends the element at "</script" and enters the escaped state at "<!--";
# U+2028/2029 are line terminators to pre-2019 JavaScript. None of these may appear verbatim in the data block.
_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def short_source(source: str) -> str:
    """A model or image source as a report shows it: a local absolute path keeps only its last two parts (a report
    is shared; where the files lay on one machine is not its reader's business), hub ids and relative paths stay.

    >>> short_source("/home/ann/models/llava-7b"), short_source("llava-hf/llava-1.5-7b-hf")
    ('…/models/llava-7b', 'llava-hf/llava-1.5-7b-hf')
    """
    path = PurePath(source)
    if not path.is_absolute() or len(path.parts) <= 3:
        return source
    return "…/" + "/".join(path.parts[-2:])


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/:'\"<>]+/)+[^\s/:'\"<>]+")


def short_paths(message: str) -> str:
    """``message`` with every absolute path in it shortened as :func:`short_source` does (error messages name
    files).

    >>> short_paths("image file not found: /home/ann/data/image/AMBER_3.jpg")
    'image file not found: …/image/AMBER_3.jpg'
    """
    return _ABSOLUTE_PATH.sub(lambda m: short_source(m.group(0)), message)


def text(value: Any) -> str:
    """``value`` as HTML text or a quoted attribute value: ``& < > " '`` escaped.

    >>> text("<script>alert(1)</script>")
    '&lt;script&gt;alert(1)&lt;/script&gt;'
    """
    return html.escape(str(value), quote=True)


def json_for_script(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">`` (and parses back to ``data``).

    Non-finite floats become ``null`` (JSON has no NaN).

    >>> json_for_script({"t": "</script><!--\\u2028"})
    '{"t":"\\\\u003c/script\\\\u003e\\\\u003c!--\\\\u2028"}'
    """
    try:
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or infinity somewhere: walk the data once to replace them
        encoded = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in _SCRIPT_ESCAPES.items():
        encoded = encoded.replace(raw, escaped)
    return encoded


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
