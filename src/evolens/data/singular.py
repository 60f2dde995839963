"""pattern 3.6's ``singularize``, the function CHAIR's ``chair.py`` calls (its ``requirements.txt`` pins
``pattern==3.6``), for the ``"official"`` protocol.

TextBlob ships an adapted copy of pattern's inflection module (:func:`evolens.data.text.singularize`, used by the
``"evolens"`` protocol). Its suffix rules, irregular plurals and prepositions are pattern's; it differs in

* an extra step: a word ending in a plural of ``bus``, ``gas``, ``lens``… returns that listed word alone
  ("airbuses" -> "bus"; pattern: "airbus");
* the "-ie" nouns: TextBlob returns the listed singular ("collies" -> "collie", "doggies" -> "doggie"), pattern
  returns the word unchanged, lower-cased ("collies", "doggies");
* its word lists: TextBlob adds aircraft, antelope, cattle, jeans, moose, offspring (unchanged), cannabis
  (uncountable), bookie, algerie (-ie) and lynxes (irregular); pattern has christmas (unchanged), alergie and newbie.

This module takes the rule tables both share from TextBlob and applies pattern's own steps and lists on top, so
that nothing is copied twice. pattern's steps, in order, for a word ``w`` (``lower`` = ``w`` lower-cased):

1. ``a-preposition-b`` compounds singularize their first part ("mothers-in-law"); a trailing apostrophe becomes
   ``'s`` after singularizing the rest;
2. ``w`` unchanged when some unchanged or uncountable word *ends with* ``lower`` (pattern tests it this way round,
   so any ending of "sheep" or "news" is kept as well);
3. ``lower`` unchanged when it ends with a listed "-ie" noun plus ``s`` (the entries "^pie" and "^tie" hold a
   literal ``^`` and never match: "ties" -> "ty", "neckties" -> "neckty");
4. an irregular plural at the end is replaced by its singular ("geese" -> "goose");
5. the first suffix rule that matches rewrites the word ("buses" -> "bus", "glass" -> "glas", "dogs" -> "dog").

The order of pattern's sets and dict (arbitrary in the Python 2 CHAIR ran on) does not matter: steps 2 and 3 return
the same whichever entry matched, and no irregular plural ends with another one.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# pattern 3.6's lists as differences from TextBlob's copy (checked against pattern's inflect.py, release 3.6).
_UNCHANGED_ONLY_IN_TEXTBLOB = frozenset(
    {"aircraft", "antelope", "cattle", "jeans", "moose", "offspring", "cannabis"}
)
_UNCHANGED_ONLY_IN_PATTERN = frozenset({"christmas"})
_IE_ONLY_IN_TEXTBLOB = frozenset({"bookie", "algerie"})
_IE_ONLY_IN_PATTERN = frozenset({"alergie", "newbie"})
_IRREGULAR_ONLY_IN_TEXTBLOB = frozenset({"lynxes"})


@lru_cache(maxsize=1)
def _tables() -> dict[str, Any]:
    from textblob.en import inflect

    unchanged = set(inflect.singular_uninflected) | set(inflect.singular_uncountable)
    ie_words = set(inflect.singular_ie)
    return {
        "prepositions": frozenset(inflect.plural_prepositions),
        "unchanged": frozenset((unchanged - _UNCHANGED_ONLY_IN_TEXTBLOB) | _UNCHANGED_ONLY_IN_PATTERN),
        "ie": frozenset((ie_words - _IE_ONLY_IN_TEXTBLOB) | _IE_ONLY_IN_PATTERN),
        "irregular": {
            plural: single
            for plural, single in inflect.singular_irregular.items()
            if plural not in _IRREGULAR_ONLY_IN_TEXTBLOB
        },
        "rules": list(inflect.singular_rules),
    }


def pattern_singularize(word: str) -> str:
    """The singular of ``word`` as pattern 3.6's ``singularize`` gives it (see the module docstring)."""
    tables = _tables()
    parts = word.split("-")
    if len(parts) > 1 and parts[1] in tables["prepositions"]:
        return pattern_singularize(parts[0]) + "-" + "-".join(parts[1:])
    if word.endswith("'"):
        return pattern_singularize(word[:-1]) + "'s"
    lower = word.lower()
    if any(kept.endswith(lower) for kept in tables["unchanged"]):
        return word
    if any(lower.endswith(ie_word + "s") for ie_word in tables["ie"]):
        return lower
    for plural, single in tables["irregular"].items():
        if lower.endswith(plural):
            return re.sub(f"(?i){plural}$", single, word)
    for suffix, replacement in tables["rules"]:
        if suffix.search(word):
            # Python 3 writes an unmatched group as "", which pattern does by hand for Python 2.
            return str(suffix.sub(replacement, word))
    return word
