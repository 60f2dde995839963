"""Word-level text processing for the hallucination benchmarks: the exact tools when their data is installed,
a documented fallback built only from PyPI wheels when it is not.

The benchmarks' own code uses

* AMBER: ``nltk.word_tokenize`` (Punkt sentences + the Treebank word tokenizer), ``nltk.pos_tag`` (averaged
  perceptron) to keep nouns (``NN*``), NLTK's WordNet lemmatizer, and spaCy's ``en_core_web_lg`` vectors for
  near-synonyms (similarity > 0.8);
* CHAIR: ``nltk.word_tokenize`` on the lower-cased caption and ``pattern.en.singularize`` (pattern 3.6).

NLTK's data (``punkt_tab``, ``averaged_perceptron_tagger_eng``, ``wordnet``) and spaCy's model are downloads,
not parts of the PyPI wheels. When they are present on the machine, :class:`TextTools` uses them (``"exact"``);
when they are not, each missing piece is replaced (``"fallback"``):

============== =========================================== ==================================================
component      exact                                       fallback (what ships inside PyPI wheels)
============== =========================================== ==================================================
sentences      NLTK Punkt (``punkt_tab``)                  split after ``.``/``!``/``?`` followed by space
words          NLTK Treebank word tokenizer                the same tokenizer (code only, no data needed)
POS tags       NLTK averaged perceptron                    pattern's Brill tagger, lexicon shipped in TextBlob
noun lemmas    WordNet (morphy)                            morphy's suffix rules + pattern's singularize, with
                                                           the benchmark's vocabulary as the lexicon
similarity     spaCy ``en_core_web_lg``                    none (only exact and listed related words match)
singularize    pattern 3.6 (protocol "official") or its    the same
               copy in TextBlob (protocol "evolens")
============== =========================================== ==================================================

The fallback agrees with the exact method on ordinary descriptions; it differs where the exact tagger and the
fallback tagger disagree on a word's part of speech, on nouns WordNet lemmatizes to a form outside the benchmark
vocabulary, and on AMBER words only spaCy's vectors relate (near-synonyms outside ``relation.json``). Every
evaluation records which tools ran.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from evolens.errors import SettingsError

logger = logging.getLogger(__name__)

MethodName = Literal["auto", "exact", "fallback"]

SPACY_MODEL = "en_core_web_lg"
INSTALL_HINT = (
    "python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng wordnet && "
    f"python -m spacy download {SPACY_MODEL}"
)

#: WordNet's morphological substitutions for nouns (``nltk.corpus.wordnet`` / WordNet's morphy).
NOUN_SUFFIX_RULES = (
    ("s", ""),
    ("ses", "s"),
    ("ves", "f"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
)

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")


@dataclass(frozen=True)
class Word:
    """A word of a text: its string as the tokenizer returns it, its character span, its POS tag.

    Attributes:
        text: The token (the Treebank tokenizer writes double quotes as ``` `` ``` and ``''``).
        start: Offset of its first character in the text.
        end: Offset after its last character.
        tag: Penn Treebank tag, when tagged.
    """

    text: str
    start: int
    end: int
    tag: str | None = None


@dataclass(frozen=True)
class TextMethod:
    """Which implementation ran for each component (see the module docstring).

    Attributes:
        requested: ``"auto"``, ``"exact"`` or ``"fallback"``.
        sentences, tagger, lemmatizer, similarity: ``"exact"`` or ``"fallback"`` for each component.
    """

    requested: str
    sentences: str
    tagger: str
    lemmatizer: str
    similarity: str

    def for_amber(self) -> str:
        """``"exact"`` when AMBER's own tools all ran, ``"fallback"`` when none did, else ``"partial"``."""
        parts = {self.sentences, self.tagger, self.lemmatizer, self.similarity}
        return parts.pop() if len(parts) == 1 else "partial"

    def for_chair(self) -> str:
        """CHAIR needs only the sentence splitter beyond code that always ships (tokenizer, singularize)."""
        return self.sentences

    def describe(self) -> dict[str, str]:
        """Human-readable names of what ran."""
        names = {
            "sentences": ("NLTK Punkt (punkt_tab)", "regular-expression sentence split"),
            "tagger": (
                "NLTK averaged perceptron tagger",
                "pattern Brill tagger (lexicon shipped in TextBlob)",
            ),
            "lemmatizer": (
                "NLTK WordNet lemmatizer",
                "WordNet suffix rules + pattern singularize over the benchmark vocabulary",
            ),
            "similarity": (f"spaCy {SPACY_MODEL} vectors", "none"),
        }
        return {k: names[k][0 if getattr(self, k) == "exact" else 1] for k in names}

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "amber": self.for_amber(),
            "chair": self.for_chair(),
            "tools": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextMethod:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


# ---------------------------------------------------------------------- detection
@cache
def nltk_available(component: str) -> bool:
    """Whether NLTK and the data of ``component`` (``"punkt"``, ``"tagger"``, ``"wordnet"``) are installed."""
    try:
        import nltk

        if component == "punkt":
            from nltk.tokenize import PunktTokenizer

            PunktTokenizer("english")
        elif component == "tagger":
            nltk.pos_tag(["a", "cat"])
        elif component == "wordnet":
            from nltk.stem import WordNetLemmatizer

            WordNetLemmatizer().lemmatize("cats")
        else:
            raise ValueError(component)
    except (LookupError, ImportError, OSError, AttributeError):
        return False
    return True


@cache
def spacy_available() -> bool:
    """Whether spaCy and its ``en_core_web_lg`` model are installed (not loaded here)."""
    try:
        import spacy.util

        return bool(spacy.util.is_package(SPACY_MODEL))
    except ImportError:
        return False


@lru_cache(maxsize=1)
def _spacy_model() -> Any:
    import spacy

    return spacy.load(SPACY_MODEL)


# each component of the text tools, and whether this machine has its exact form
_EXACT: dict[str, Callable[[], bool]] = {
    "sentences": lambda: nltk_available("punkt"),
    "tagger": lambda: nltk_available("tagger"),
    "lemmatizer": lambda: nltk_available("wordnet"),
    "similarity": spacy_available,
}
COMPONENTS = tuple(_EXACT)


def available() -> dict[str, bool]:
    """Which exact components this machine has."""
    return {name: has() for name, has in _EXACT.items()}


def check_text_method(method: str) -> None:
    """Refuse an unknown text-tools method, or ``"exact"`` when some of its data is missing (the message says how
    to install it). ``"auto"`` and ``"fallback"`` always run: nothing is imported or looked up for them.

    Raises:
        SettingsError: As said.
    """
    if method not in ("auto", "exact", "fallback"):
        raise SettingsError(f"unknown text method {method!r}; use 'auto', 'exact' or 'fallback'")
    if method == "exact":
        missing = [k for k, ok in available().items() if not ok]
        if missing:
            raise SettingsError(
                f"the exact benchmark tools are not all installed (missing: {', '.join(missing)}); install them "
                f"with `{INSTALL_HINT}`, or use method='auto' or 'fallback'"
            )


# ---------------------------------------------------------------------- tools
class TextTools:
    """Tokenize, tag, lemmatize and compare words the way the benchmarks do (see the module docstring).

    Args:
        method: ``"auto"`` (each component exact when its data is installed, else its fallback), ``"exact"``
            (refuse to run without all of them) or ``"fallback"`` (the PyPI-only tools everywhere, for numbers
            that do not depend on the machine).

    Raises:
        SettingsError: ``method="exact"`` and some data is missing (the message says how to install it), or an
            unknown method.
    """

    def __init__(self, method: MethodName = "auto") -> None:
        check_text_method(method)
        have = available() if method != "fallback" else dict.fromkeys(COMPONENTS, False)
        self.method = TextMethod(
            requested=method, **{k: "exact" if ok else "fallback" for k, ok in have.items()}
        )
        from nltk.tokenize import NLTKWordTokenizer

        self._words = NLTKWordTokenizer()
        self._similar: dict[tuple[str, str], float] = {}

    # -------------------------------------------------------------- words
    def sentence_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the sentences of ``text``."""
        if self.method.sentences == "exact":
            return [(int(a), int(b)) for a, b in _punkt().span_tokenize(text)] if text else []
        spans: list[tuple[int, int]] = []
        start = 0
        for match in _SENTENCE_END.finditer(text):
            if text[start : match.end()].strip():
                begin = start + len(text[start : match.end()]) - len(text[start : match.end()].lstrip())
                spans.append((begin, match.end()))
            start = match.end()
        if text[start:].strip():
            begin = start + len(text[start:]) - len(text[start:].lstrip())
            spans.append((begin, len(text.rstrip())))
        return spans

    def words(self, text: str) -> list[Word]:
        """``nltk.word_tokenize(text)`` with character spans: sentences, then the Treebank word tokenizer."""
        out: list[Word] = []
        for s0, s1 in self.sentence_spans(text):
            sentence = text[s0:s1]
            tokens = self._words.tokenize(sentence)
            spans = list(self._words.span_tokenize(sentence))
            if len(tokens) != len(spans):  # pragma: no cover - NLTK keeps them aligned
                raise RuntimeError("the word tokenizer returned tokens and spans that do not align")
            out.extend(Word(t, s0 + a, s0 + b) for t, (a, b) in zip(tokens, spans, strict=True))
        return out

    def tagged(self, text: str) -> list[Word]:
        """:meth:`words` with Penn Treebank tags (``nltk.pos_tag`` over the whole token list, as AMBER does)."""
        words = self.words(text)
        if not words:
            return []
        if self.method.tagger == "exact":
            import nltk

            tags = [tag for _, tag in nltk.pos_tag([w.text for w in words])]
        else:
            tags = _pattern_tags([w.text for w in words])
        return [Word(w.text, w.start, w.end, tag) for w, tag in zip(words, tags, strict=True)]

    # -------------------------------------------------------------- lemmas
    def noun_lemma(self, word: str, lexicon: Collection[str]) -> str:
        """The WordNet noun lemma of ``word`` (case kept, as NLTK's lemmatizer does).

        Exact: ``WordNetLemmatizer().lemmatize(word)``. Fallback: the shortest of ``word`` and its forms under
        WordNet's noun suffix rules that is in ``lexicon``; when ``word`` itself is not in the lexicon, pattern's
        singular form competes too (irregular plurals: children, geese, leaves) — outside the lexicon only when it
        is an English word (in the fallback tagger's lexicon), as WordNet keeps only lemmas it knows: "leaves"
        gives "leaf" over a listed "leave", while "ties" stays "tie" (pattern's "ty" is no word).
        """
        if self.method.lemmatizer == "exact":
            return str(_wordnet_lemmatizer().lemmatize(word))
        forms = [word] + [word[: -len(old)] + new for old, new in NOUN_SUFFIX_RULES if word.endswith(old)]
        known = [f for f in dict.fromkeys(forms) if f in lexicon]
        if word not in lexicon:
            singular = singularize(word)
            if singular != word and (singular in lexicon or (known and is_english_word(singular))):
                known.append(singular)
        return min(known, key=len) if known else word

    def similarity(self, a: str, b: str) -> float | None:
        """spaCy ``en_core_web_lg`` similarity of two words, or ``None`` without the model."""
        if self.method.similarity != "exact":
            return None
        key = (a, b) if a <= b else (b, a)
        if key not in self._similar:
            nlp = _spacy_model()
            self._similar[key] = float(nlp(a).similarity(nlp(b)))
        return self._similar[key]


def is_english_word(word: str) -> bool:
    """Whether ``word`` (or its lower-cased form) is in the lexicon of pattern's tagger that TextBlob ships."""
    from textblob.en import lexicon

    return word in lexicon or word.lower() in lexicon


def singularize(word: str) -> str:
    """pattern's ``singularize`` as TextBlob ships it (CHAIR's ``"evolens"`` protocol; it differs from pattern 3.6,
    which CHAIR's own code runs, on a few words: see :mod:`evolens.data.singular`)."""
    from textblob.en.inflect import singularize as pattern_singularize

    return str(pattern_singularize(word))


@lru_cache(maxsize=1)
def _punkt() -> Any:
    from nltk.tokenize import PunktTokenizer

    return PunktTokenizer("english")


@lru_cache(maxsize=1)
def _wordnet_lemmatizer() -> Any:
    from nltk.stem import WordNetLemmatizer

    return WordNetLemmatizer()


def _pattern_tags(tokens: list[str]) -> list[str]:
    """Penn tags of pre-tokenized words from pattern's Brill tagger (TextBlob's copy), one per token."""
    from textblob.en import tag

    # The tagger splits on spaces only (tokenize=False); tokens never contain spaces.
    tagged = tag(" ".join(t.replace(" ", "_") for t in tokens), tokenize=False)
    if len(tagged) != len(tokens):  # pragma: no cover - defensive: fall back to one token at a time
        return [tag(t, tokenize=False)[0][1] for t in tokens]
    return [str(t) for _, t in tagged]
