"""Benchmark metrics checked by hand on the fixtures (fallback text tools: this machine has no NLTK data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolens.data import Amber, Coco, Evaluation, ImageFolder, Pope, evaluate_dataset
from evolens.data.amber_eval import AmberJudge
from evolens.data.chair import ChairJudge
from evolens.data.scores import BinaryScores, first_word_answer, pope_answer
from evolens.data.text import TextTools, available
from evolens.errors import DatasetError, SettingsError
from tests.data.fixtures import (
    AMBER_RELATION,
    AMBER_RESPONSES,
    AMBER_SAFE_WORDS,
    COCO_RESPONSES,
    POPE_QUESTIONS,
    write_amber,
    write_coco,
    write_folder,
    write_pope,
)


@pytest.fixture(scope="module")
def tools() -> TextTools:
    return TextTools("fallback")


# ----------------------------------------------------------------------------------------- text tools
def test_words_have_spans_and_treebank_tokens(tools: TextTools) -> None:
    text = 'Two dogs. A "red" ball, isn\'t it?'
    words = tools.words(text)
    assert [w.text for w in words] == [
        "Two",
        "dogs",
        ".",
        "A",
        "``",
        "red",
        "''",
        "ball",
        ",",
        "is",
        "n't",
        "it",
        "?",
    ]
    assert all(text[w.start : w.end] in (w.text, '"') for w in words)


def test_fallback_sentences_keep_closing_quotes(tools: TextTools) -> None:
    text = 'He said "hi." Then 3.5 dogs left!  '
    assert [text[a:b] for a, b in tools.sentence_spans(text)] == ['He said "hi."', "Then 3.5 dogs left!"]
    assert [w.text for w in tools.words(text)][-3:] == ["dogs", "left", "!"]


def test_fallback_tagger_tags_nouns_and_modal_can(tools: TextTools) -> None:
    tags = {w.text: w.tag for w in tools.tagged("A man can watch the dogs near a bench.")}
    assert tags["man"] == "NN" and tags["dogs"] == "NNS" and tags["bench"] == "NN"
    assert tags["can"] == "MD" and tags["watch"].startswith("VB")


@pytest.mark.parametrize(
    ("word", "lemma"),
    [
        ("dogs", "dog"),
        ("men", "man"),
        ("children", "child"),
        ("benches", "bench"),
        ("glasses", "glass"),
        ("buses", "bus"),
        ("bus", "bus"),
        ("grass", "grass"),
        ("people", "people"),
        ("leaves", "leaf"),
        ("ties", "tie"),  # not pattern's "ty": a vocabulary form wins over a singular that is no word
        ("neckties", "necktie"),
        ("Dogs", "Dogs"),  # AMBER's lemmatizer keeps case, so a capitalised word is not matched
    ],
)
def test_fallback_noun_lemmas(tools: TextTools, word: str, lemma: str) -> None:
    lexicon = {
        "dog",
        "man",
        "child",
        "bench",
        "glass",
        "bus",
        "grass",
        "people",
        "person",
        "leave",
        "tie",
        "necktie",
    }
    assert tools.noun_lemma(word, lexicon) == lemma


def test_method_is_reported_and_exact_refused_without_data() -> None:
    tools = TextTools("fallback")
    assert tools.method.for_amber() == "fallback" and tools.method.for_chair() == "fallback"
    assert tools.method.to_dict()["tools"]["similarity"] == "none"
    assert tools.similarity("dog", "cat") is None
    if all(available().values()):
        pytest.skip("this machine has NLTK's and spaCy's data: the exact method is available")
    with pytest.raises(SettingsError, match=r"missing: .*python -m nltk.downloader"):
        TextTools("exact")
    with pytest.raises(SettingsError, match="unknown text method"):
        TextTools("best")  # type: ignore[arg-type]


def test_checking_the_method_looks_up_the_tools_only_for_exact(monkeypatch) -> None:
    """A run checks its text method before tracing; for "auto" and "fallback" nothing is imported or looked up
    (a run that judges nothing never loads NLTK), "exact" says what is missing."""
    from evolens.data import text

    def looked_up() -> dict[str, bool]:
        raise AssertionError("the tools were looked up")

    monkeypatch.setattr(text, "available", looked_up)
    text.check_text_method("auto")
    text.check_text_method("fallback")
    with pytest.raises(SettingsError, match="unknown text method"):
        text.check_text_method("best")
    monkeypatch.setattr(text, "available", lambda: dict.fromkeys(text.COMPONENTS, True) | {"tagger": False})
    with pytest.raises(SettingsError, match=r"missing: tagger\)"):
        text.check_text_method("exact")


# ------------------------------------------------------------------------------------------------ AMBER
def test_amber_generative_by_hand(tmp_path: Path) -> None:
    data = write_amber(tmp_path)
    result = evaluate_dataset(Amber(data), AMBER_RESPONSES, method="fallback")
    one, two, three = result.items
    # 1: man (-> person, truth), dogs (truth), grass (truth), tree (not annotated: flagged), cat and car (annotated
    #    hallucination targets: flagged, Cog 2/3), camera (safe word: counted, never flagged); "Dogs" (capitalised)
    #    is not matched. 7 nouns, 3 flagged, Cover 3/3.
    assert [(m.word, m.object, m.label) for m in one.mentions] == [
        ("man", "man", "grounded"),
        ("dogs", "dog", "grounded"),
        ("grass", "grass", "grounded"),
        ("tree", "tree", "hallucinated"),
        ("cat", "cat", "hallucinated"),
        ("car", "car", "hallucinated"),
        ("camera", "camera", "exempt"),
    ]
    assert one.counts == {
        "mentions": 7,
        "flagged": 3,
        "cover_hits": 3,
        "cover_total": 3,
        "cog_hits": 2,
        "cog_total": 3,
    }
    # 2: beach (truth), sand (related to beach), water (related to sea: covers sea), sky (flagged). Cover 2/2, Cog 0/2.
    assert [(m.object, m.label) for m in two.mentions] == [
        ("beach", "grounded"),
        ("sand", "grounded"),
        ("water", "grounded"),
        ("sky", "hallucinated"),
    ]
    assert two.counts == {
        "mentions": 4,
        "flagged": 1,
        "cover_hits": 2,
        "cover_total": 2,
        "cog_hits": 0,
        "cog_total": 2,
    }
    # 3: ball (truth); tree not mentioned: Cover 1/2.
    assert three.counts == {
        "mentions": 1,
        "flagged": 0,
        "cover_hits": 1,
        "cover_total": 2,
        "cog_hits": 0,
        "cog_total": 1,
    }
    assert not three.hallucinated
    g = result.amber_generative
    assert g is not None
    assert g.chair == pytest.approx(4 / 12)  # 3 + 1 + 0 flagged of 7 + 4 + 1 nouns
    assert g.cover == pytest.approx(6 / 7)  # (3 + 2 + 1) / (3 + 2 + 2)
    assert g.hal == pytest.approx(2 / 3)  # responses 1 and 2 have a flagged noun
    assert g.cog == pytest.approx(2 / 6)  # (2 + 0 + 0) / (3 + 2 + 1)
    assert result.method.for_amber() == "fallback"
    assert any("CHAIR 33.3  Cover 85.7  Hal 66.7  Cog 33.3" in line for line in result.summary_lines())


def test_amber_discriminative_by_hand(tmp_path: Path) -> None:
    data = write_amber(tmp_path)
    result = evaluate_dataset(Amber(data, "query_discriminative.json"), AMBER_RESPONSES, method="fallback")
    d = result.amber_discriminative
    assert d is not None
    # 4 yes/yes (TN for "no"), 5 no/no (TP), 6 yes/no (FN), 7 "Maybe" (unparsed, truth yes), 8 no/no (TP).
    o = d.overall
    assert (o.tp, o.fp, o.tn, o.fn, o.unparsed_positive, o.unparsed_negative) == (2, 0, 1, 1, 0, 1)
    assert o.accuracy == pytest.approx(3 / 5)
    assert o.precision == pytest.approx(1.0)  # AMBER: answered "No" and truth no / answered "No"
    assert o.recall == pytest.approx(2 / 3)  # AMBER: truth no and answered "No" / truth no
    assert o.f1 == pytest.approx(0.8)
    assert o.yes_ratio == pytest.approx(2 / 5)
    assert d.existence is not None and d.existence.n == 1 and d.existence.accuracy == 1.0
    assert d.existence.precision is None and d.existence.f1 is None
    assert d.attribute is not None and (d.attribute.n, d.attribute.recall) == (2, 0.5)
    assert d.relation is not None and (d.relation.n, d.relation.accuracy) == (2, 0.5)
    assert d.attribute_state is not None and d.attribute_action is None
    labels = {it.item_id: [m.label for m in it.mentions] for it in result.items}
    assert labels == {"4": ["grounded"], "5": ["grounded"], "6": ["hallucinated"], "7": [], "8": ["grounded"]}


def test_amber_similarity_is_used_when_available() -> None:
    """With word vectors, a noun similar to a truth object is grounded and one similar to a target counts for Cog."""

    class Similar(TextTools):
        def similarity(self, a: str, b: str) -> float | None:
            pairs = {frozenset(("cat", "dog")): 0.81, frozenset(("car", "sky")): 0.9}
            return 1.0 if a == b else pairs.get(frozenset((a, b)), 0.1)

    judge = AmberJudge(AMBER_RELATION, AMBER_SAFE_WORDS, Similar("fallback"))
    result = judge.judge("x", "A cat and a car.", truth=["dog"], hallu=["sky"])
    assert [(m.object, m.label) for m in result.mentions] == [("cat", "grounded"), ("car", "hallucinated")]
    assert result.counts is not None and result.counts["cover_hits"] == 1 and result.counts["cog_hits"] == 1


def test_answers_parse() -> None:
    assert first_word_answer("  Yes, it is.") == ("yes", (2, 5))
    assert first_word_answer("NO") == ("no", (0, 2))
    assert first_word_answer("Maybe") == (None, (0, 5))
    assert first_word_answer("...") == (None, None)
    assert pope_answer("Yes, there is a dog.") == ("yes", (0, 3))
    assert pope_answer("There is not a dog.")[0] == "no"
    assert pope_answer("Yes. No") == ("yes", (0, 3))  # only the first sentence counts
    assert pope_answer("No, none.") == ("no", (0, 2))


# ------------------------------------------------------------------------------------------------- POPE
def test_pope_by_hand(tmp_path: Path) -> None:
    images, questions = write_pope(tmp_path)
    responses = {str(i): text for i, (_, text) in enumerate(POPE_QUESTIONS, start=1)}
    result = evaluate_dataset(Pope(images, questions), responses)
    p = result.pope
    assert p is not None
    # TP: 1, 5; TN: 2, 6; FP: 3 ("There is a cat" has no "no"); FN: 4 ("do not see").
    assert (p.tp, p.tn, p.fp, p.fn) == (2, 2, 1, 1)
    assert p.accuracy == pytest.approx(4 / 6)
    assert (
        p.precision == pytest.approx(2 / 3)
        and p.recall == pytest.approx(2 / 3)
        and p.f1 == pytest.approx(2 / 3)
    )
    assert p.yes_ratio == pytest.approx(3 / 6)
    assert [it.hallucinated for it in result.items] == [False, False, True, True, False, False]
    assert result.items[3].mentions[0].word == "not"
    rows = {(r.benchmark, r.name): (r.value, r.unit) for r in result.score_rows()}
    assert rows[("POPE", "F1")] == (p.f1, "%") and rows[("POPE", "questions")] == (6, "count")
    assert rows[("POPE", "precision ('yes' positive)")] == (p.precision, "%")
    assert {r.benchmark for r in result.score_rows()} == {"POPE"}


def test_binary_scores_round_trip() -> None:
    scores = BinaryScores.from_answers(["yes", "no", None], ["yes", "yes", "no"], positive="yes")
    assert BinaryScores.from_dict(scores.to_dict()) == scores
    assert scores.recall == pytest.approx(1 / 2)


# ------------------------------------------------------------------------------------------------ CHAIR
def test_chair_by_hand(tmp_path: Path) -> None:
    files = write_coco(tmp_path)
    coco = Coco(files["root"], files["captions"], files["instances"], synonyms=files["synonyms"])
    result = evaluate_dataset(coco, COCO_RESPONSES)
    first, second, third = result.items
    # Image 11: truth = instances {dog, person} + reference captions {person, dog, dining table}.
    assert [(m.word, m.object, m.label) for m in first.mentions] == [
        ("men", "person", "grounded"),
        ("puppy", "dog", "grounded"),
        ("desk", "dining table", "grounded"),
        ("hot dogs", "hot dog", "hallucinated"),
        ("cat", "cat", "hallucinated"),
    ]
    # Image 22: "toilet seat" counts as toilet; "baby elephant" as elephant.
    assert [(m.word, m.object, m.label) for m in second.mentions] == [
        ("toilet seat", "toilet", "grounded"),
        ("baby elephant", "elephant", "hallucinated"),
        ("teddy bear", "teddy bear", "hallucinated"),
    ]
    assert third.mentions == () and not third.hallucinated
    c = result.chair
    assert c is not None and c.synonyms == "chair"
    assert c.chair_s == pytest.approx(2 / 3)
    assert c.chair_i == pytest.approx(4 / 8)
    assert c.recall == pytest.approx(
        4 / 6
    )  # {dog, person, dining table} 3/3, {toilet} 1/1, {wine glass, table} 0/2


def test_chair_without_synonym_list_uses_category_names(tmp_path: Path) -> None:
    files = write_coco(tmp_path)
    coco = Coco(files["root"], files["captions"], files["instances"])
    result = evaluate_dataset(coco, {"11": "A dog and a man at a dining table."})
    assert result.chair is not None and result.chair.synonyms == "categories"
    assert [(m.object, m.label) for m in result.items[0].mentions] == [("dog", "grounded")]


def test_chair_judge_double_words() -> None:
    judge = ChairJudge([["dog"], ["wine glass"]], [], TextTools("fallback"))
    assert [w[1] for w in judge.object_words("Two wine glasses and a baby dog.")] == ["wine glass", "dog"]


# ---------------------------------------------------------------------------------------------- dispatch
def test_unjudged_items_and_unknown_responses(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    result = evaluate_dataset(ImageFolder(root, "p"), {"a/img0.png": "text"})
    assert result.items == [] and result.n_unjudged == 1 and result.summary_lines() == []
    with pytest.raises(DatasetError, match="none of the responses' ids are items of the dataset"):
        evaluate_dataset(ImageFolder(root, "p"), {"nope": "text"})


def test_evaluation_round_trip(tmp_path: Path) -> None:
    data = write_amber(tmp_path)
    result = evaluate_dataset(Amber(data, "query_all.json"), AMBER_RESPONSES, method="fallback")
    again = Evaluation.from_dict(result.to_dict())
    assert again.to_dict() == result.to_dict()
    assert again.amber_generative == result.amber_generative


def test_exact_tools_are_wired_when_the_data_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for NLTK's and spaCy's data: the exact path calls Punkt, pos_tag, WordNet and the vectors."""
    import nltk

    from evolens.data import text as text_module

    monkeypatch.setattr(
        text_module,
        "available",
        lambda: dict.fromkeys(("sentences", "tagger", "lemmatizer", "similarity"), True),
    )

    class Punkt:
        def span_tokenize(self, text: str):
            yield 0, len(text)

    class Lemmatizer:
        def lemmatize(self, word: str) -> str:
            return {"dogs": "dog", "cats": "cat"}.get(word, word)

    class Doc:
        def __init__(self, word: str) -> None:
            self.word = word

        def similarity(self, other: Doc) -> float:
            return (
                1.0 if self.word == other.word else 0.85 if {self.word, other.word} == {"cat", "dog"} else 0.0
            )

    seen: dict[str, list[str]] = {}

    def pos_tag(tokens: list[str]) -> list[tuple[str, str]]:
        seen["tokens"] = list(tokens)
        return [(t, "NNS" if t.endswith("s") else "NN") for t in tokens]

    monkeypatch.setattr(text_module, "_punkt", lambda: Punkt())
    monkeypatch.setattr(text_module, "_wordnet_lemmatizer", lambda: Lemmatizer())
    monkeypatch.setattr(text_module, "_spacy_model", lambda: Doc)
    monkeypatch.setattr(nltk, "pos_tag", pos_tag)
    tools = TextTools("exact")
    assert tools.method.for_amber() == "exact" and tools.method.for_chair() == "exact"
    judge = AmberJudge(AMBER_RELATION, [], tools)
    result = judge.judge("x", "dogs. cats", truth=["dog"], hallu=["car"])
    assert seen["tokens"] == [
        "dogs.",
        "cats",
    ]  # one Punkt sentence; the Treebank tokenizer keeps a mid-text period
    assert [(m.object, m.label) for m in result.mentions] == [("cat", "grounded")]  # cat ~ dog (0.85 > 0.8)
