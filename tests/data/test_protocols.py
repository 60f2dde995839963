"""The ``official`` and ``evolens`` protocols, checked against results worked out by hand from the official scripts'
rules (AMBER ``inference.py``, CHAIR ``chair.py`` with pattern 3.6, POPE ``evaluate.py``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from evolens.data import Coco, Evaluation, Response, evaluate, evaluate_dataset
from evolens.data.amber_eval import AmberJudge, judge_discriminative
from evolens.data.chair import ChairJudge, official_synonym_groups
from evolens.data.official_format import (
    amber_binary_printed,
    amber_generative_printed,
    chair_printed,
    official_lines,
    official_printed,
)
from evolens.data.protocols import DEFAULT_PROTOCOL, PROTOCOLS, check_protocol
from evolens.data.scores import BinaryScores, exact_answer
from evolens.data.singular import pattern_singularize
from evolens.data.text import TextTools, singularize
from evolens.errors import SettingsError
from tests.data.fixtures import CHAIR_SYNONYMS, COCO_RESPONSES, write_coco


@pytest.fixture(scope="module")
def tools() -> TextTools:
    return TextTools("fallback")


def _yes_no(answers: list[tuple[str, str]], protocol: str) -> BinaryScores:
    responses = [
        Response(
            str(i),
            text,
            {"task": "amber-discriminative", "truth": truth, "type": "discriminative-hallucination"},
        )
        for i, (text, truth) in enumerate(answers)
    ]
    result = evaluate(responses, {}, method="fallback", protocol=protocol)  # type: ignore[arg-type]
    assert result.protocol == protocol and result.scores()["protocol"] == protocol
    assert result.amber_discriminative is not None
    return result.amber_discriminative.overall


# ------------------------------------------------------------------------------------------ the switch
def test_protocols_and_default() -> None:
    assert PROTOCOLS == ("official", "evolens") and DEFAULT_PROTOCOL == "evolens"
    assert check_protocol("official") == "official"


def test_unknown_protocol_is_one_clear_line(tools: TextTools) -> None:
    calls = [
        lambda: evaluate([], {}, tools=tools, protocol="paper"),  # type: ignore[arg-type]
        lambda: evaluate_dataset([], {}, protocol="paper"),  # type: ignore[arg-type]
        lambda: judge_discriminative("1", "Yes", "yes", protocol="paper"),  # type: ignore[arg-type]
        lambda: ChairJudge(None, ["dog"], tools, protocol="paper"),  # type: ignore[arg-type]
        lambda: AmberJudge({"dog": []}, [], tools, protocol="paper"),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(SettingsError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith("unknown benchmark protocol 'paper'; use 'official'")


def test_evaluation_records_the_protocol_and_old_files_read_as_evolens() -> None:
    answers = [("Yes", "yes")]
    result = evaluate(
        [Response("1", "Yes", {"task": "amber-discriminative", "truth": "yes"})],
        {},
        method="fallback",
        protocol="official",
    )
    assert Evaluation.from_dict(result.to_dict()).protocol == "official"
    stored_before = result.to_dict()
    del stored_before["protocol"]
    assert Evaluation.from_dict(stored_before).protocol == "evolens"
    assert _yes_no(answers, "official").accuracy == 1.0


# ------------------------------------------------------------------------------------ AMBER yes/no
#: (response, truth). AMBER's script: correct only when the response *is* "Yes" (truth yes) or "No" (truth no).
FREE_FORM = [
    ("Yes", "yes"),  # official: answered Yes, right        evolens: yes, right
    ("No", "no"),  # official: answered No, right            evolens: no, right
    ("Yes, there is.", "yes"),  # official: neither          evolens: yes, right
    ("NO", "no"),  # official: neither (case kept)           evolens: no, right
    ("not sure", "no"),  # official: neither                 evolens: first word "not": unparsed
    (" No", "no"),  # official: neither (no stripping)       evolens: no, right
    ("No", "yes"),  # official: answered No, wrong           evolens: no, wrong
    ("yes", "no"),  # official: neither                      evolens: yes, wrong
]


def test_free_form_answers_official() -> None:
    o = _yes_no(FREE_FORM, "official")
    # "No" is AMBER's positive class. Truth no: 5 questions, one answered exactly "No" (tp = 1), four neither.
    # Truth yes: 3 questions, "Yes" (tn = 1), "No" (fp = 1), one neither.
    assert (o.tp, o.fp, o.tn, o.fn, o.unparsed_positive, o.unparsed_negative) == (1, 1, 1, 0, 4, 1)
    assert o.accuracy == pytest.approx(2 / 8)  # AMBER: qa_correct_score / qa_correct_num
    assert o.precision == pytest.approx(1 / 2)  # qa_ans_no_score / qa_ans_no_num: right "No" / every "No"
    assert o.recall == pytest.approx(1 / 5)  # qa_no_score / qa_no_num: right "No" / truth no
    assert o.f1 == pytest.approx(2 * (1 / 2) * (1 / 5) / (1 / 2 + 1 / 5))


def test_free_form_answers_evolens() -> None:
    e = _yes_no(FREE_FORM, "evolens")
    # Truth no: "No", "NO", " No" (tp = 3), "yes" (fn = 1), "not sure" unparsed. Truth yes: two yes (tn), "No" (fp).
    assert (e.tp, e.fp, e.tn, e.fn, e.unparsed_positive, e.unparsed_negative) == (3, 1, 2, 1, 1, 0)
    assert e.accuracy == pytest.approx(5 / 8)
    assert e.precision == pytest.approx(3 / 4) and e.recall == pytest.approx(3 / 5)


def test_exact_answer_span_and_mention() -> None:
    assert exact_answer("Yes") == ("yes", (0, 3)) and exact_answer("No") == ("no", (0, 2))
    assert exact_answer("Yes.") == (None, None) and exact_answer("no") == (None, None)
    judged = judge_discriminative("1", "Yes, there is.", "yes", protocol="official")
    assert judged.answer is None and judged.hallucinated and judged.mentions == ()
    judged = judge_discriminative("1", "Yes, there is.", "yes", protocol="evolens")
    assert judged.answer == "yes" and [m.word for m in judged.mentions] == ["Yes"]


def test_free_form_answers_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="evolens.data.evaluation"):
        _yes_no(FREE_FORM, "evolens")
    assert "5 of 8 answers are not exactly 'Yes' or 'No'" in caplog.text


# ---------------------------------------------------------------------------------- official rounding
def test_amber_rounding_is_for_display_only() -> None:
    # tp = 1, fn = 1, tn = 3 ("No" positive): exact precision 1, recall 1/2, F1 2/3, accuracy 4/5.
    scores = BinaryScores.from_answers(
        ["no", "yes", "yes", "yes", "yes"], ["no", "no", "yes", "yes", "yes"], "no"
    )
    assert scores.f1 == pytest.approx(2 / 3) and scores.precision == 1.0  # stored numbers stay exact
    printed = amber_binary_printed(scores)
    # AMBER: every denominator starts at 0.001: 1 / 1.001 = 99.90 %, 1 / 2.001 = 49.98 %, 4 / 5.001 = 79.98 %,
    # rounded to 99.9, 50.0, 80.0; F1 = 2 * .999 * .5 / (.999 + .5 + .0001) = .9990 / 1.4991 = 66.64 % -> 66.6,
    # where the exact F1 would print 66.7.
    assert printed == {"Accuracy": 80.0, "Precision": 99.9, "Recall": 50.0, "F1": 66.6}
    # The existence dimension adds 0.001 to the F1 denominator: .9990 / 1.5 = 66.60 % -> 66.6.
    assert amber_binary_printed(scores, "existence")["F1"] == 66.6
    # Attribute sums three counters, each started at 0.001: 1 / 1.003 = 99.70 %.
    assert amber_binary_printed(scores, "attribute")["Precision"] == 99.7


def test_amber_generative_and_chair_printed() -> None:
    from evolens.data.amber_eval import AmberGenerativeScores
    from evolens.data.chair import ChairScores

    g = AmberGenerativeScores(3, 12, 4, 2, 6, 7, 2, 6, 4 / 12, 6 / 7, 2 / 3, 2 / 6)
    # 4 / 12.001 = 33.331 %; 6 / 7.001 = 85.702 %; Hal = 100 - 1 / 3.001 * 100 = 66.678 %; 2 / 6.001 = 33.328 %.
    assert amber_generative_printed(g) == {"CHAIR": 33.3, "Cover": 85.7, "Hal": 66.7, "Cog": 33.3}
    c = ChairScores(3, 2, 7, 4, 5, 4, 4 / 7, 2 / 3, 4 / 5, "chair")
    assert chair_printed(c) == {"CHAIRs": 66.7, "CHAIRi": 57.1}  # "%0.01f" of 66.67 and 57.14


# -------------------------------------------------------------------------------------------------- POPE
#: (label, answer, what POPE's rule reads): first sentence, commas dropped, split on " ", "no" if No/no/not.
POPE_ODD = [
    ("no", "No.", "no"),
    ("yes", "Yes, not now.", "no"),  # "not" in the first sentence
    ("no", "I don't know", "yes"),  # "don't" is not "not"
    ("no", "NO", "yes"),  # upper case is not matched
    ("no", "Nope, no.", "no"),
    ("yes", "Yes. No.", "yes"),  # only the first sentence
    ("yes", "", "yes"),
    ("no", "no,dog", "yes"),  # dropping the comma makes "nodog"
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pope_is_the_same_under_both_protocols(protocol: str) -> None:
    responses = [
        Response(str(i), answer, {"task": "pope", "label": label})
        for i, (label, answer, _) in enumerate(POPE_ODD)
    ]
    result = evaluate(responses, {}, method="fallback", protocol=protocol)  # type: ignore[arg-type]
    assert [it.answer for it in result.items] == [read for _, _, read in POPE_ODD]
    p = result.pope
    assert p is not None
    # yes-pred & yes-label: 2 ("Yes. No.", ""); yes-pred & no-label: 3; no & no: 2; no-pred & yes-label: 1.
    assert (p.tp, p.fp, p.tn, p.fn) == (2, 3, 2, 1)
    assert p.accuracy == pytest.approx(4 / 8) and p.precision == pytest.approx(2 / 5)
    assert p.recall == pytest.approx(2 / 3) and p.yes_ratio == pytest.approx(5 / 8)
    assert p.f1 == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))
    printed = official_printed(result)["POPE"]
    assert (printed["TP"], printed["FP"], printed["TN"], printed["FN"]) == (2, 3, 2, 1)
    assert printed["Accuracy"] == 0.5  # POPE prints the fraction, unrounded


# ------------------------------------------------------------------------------------------------- CHAIR
def test_official_synonym_parse_keeps_the_leading_space() -> None:
    lines = ["motorcycle, scooter,  motor bike, moped", "cake,  cheesecake, cupcake", ""]
    assert official_synonym_groups(lines) == [
        ["motorcycle", "scooter", " motor bike", "moped"],
        ["cake", " cheesecake", "cupcake"],
    ]


def _chair_mentions(result: Evaluation) -> list[list[tuple[str, str]]]:
    return [[(m.object, m.label) for m in it.mentions] for it in result.items]


def test_double_space_synonyms_through_the_coco_reader(tmp_path: Path) -> None:
    files = write_coco(tmp_path)
    lines = ["dog,  puppy" if line == "dog, puppy" else line for line in CHAIR_SYNONYMS]
    files["synonyms"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    coco = Coco(files["root"], files["captions"], files["instances"], synonyms=files["synonyms"])
    official = evaluate_dataset(coco, COCO_RESPONSES, method="fallback", protocol="official")
    evolens = evaluate_dataset(coco, COCO_RESPONSES, method="fallback", protocol="evolens")
    # Image 11, "Two men and a puppy sit at the desk eating hot dogs with a cat.": CHAIR's parser keeps " puppy",
    # which no word equals, so the puppy is no mention; evolens strips it and counts the puppy as a dog.
    assert _chair_mentions(official)[0] == [
        ("person", "grounded"),
        ("dining table", "grounded"),
        ("hot dog", "hallucinated"),
        ("cat", "hallucinated"),
    ]
    assert _chair_mentions(evolens)[0][:2] == [("person", "grounded"), ("dog", "grounded")]
    # Image 22 adds 3 mentions, 2 hallucinated (baby elephant, teddy bear); image 33 none.
    assert official.chair is not None and evolens.chair is not None
    assert official.chair.chair_i == pytest.approx(4 / 7) and evolens.chair.chair_i == pytest.approx(4 / 8)
    assert official.chair.chair_s == evolens.chair.chair_s == pytest.approx(2 / 3)


def test_official_without_raw_lines_says_so(tools: TextTools, caplog: pytest.LogCaptureFixture) -> None:
    responses = [Response("1", "A puppy.", {"task": "chair", "instance_objects": ["dog"]})]
    resources = {"synonyms": [["dog", "puppy"]], "categories": ["dog"]}
    with caplog.at_level(logging.WARNING, logger="evolens.data.chair"):
        result = evaluate(responses, resources, tools=tools, protocol="official")
    assert "raw lines are not among the resources" in caplog.text
    assert _chair_mentions(result) == [[("dog", "grounded")]]


@pytest.mark.parametrize(
    ("word", "pattern", "textblob"),
    [
        ("airbuses", "airbus", "bus"),  # pattern: the "(bus)es" rule; TextBlob: its list of "-s" singulars
        ("minibuses", "minibus", "bus"),
        ("collies", "collies", "collie"),  # pattern returns a listed "-ie" plural unchanged
        ("doggies", "doggies", "doggie"),
        ("ties", "ty", "ty"),  # "^tie" holds a literal "^": the "-ies" rule applies in both
        ("neckties", "neckty", "neckty"),
        ("christmas", "christmas", "christma"),  # unchanged only in pattern's list
        ("jeans", "jean", "jeans"),  # unchanged only in TextBlob's list
        ("geese", "goose", "goose"),
        ("glass", "glas", "glas"),  # why CHAIR maps "wine glas" to "wine glass"
        ("mothers-in-law", "mother-in-law", "mother-in-law"),
        ("dogs'", "dog's", "dog's"),
    ],
)
def test_singularizers(word: str, pattern: str, textblob: str) -> None:
    assert pattern_singularize(word) == pattern
    assert singularize(word) == textblob


def test_chair_singularizer_per_protocol(tools: TextTools) -> None:
    groups = [["airplane", "jet", "airbus"], ["bus", "minibus"], ["dog", "collie", "doggie"]]
    caption = "Two airbuses, three collies and doggies."
    found = {
        protocol: ChairJudge(groups, [], tools, protocol=protocol).judge("1", caption, ["airplane"], [])
        for protocol in PROTOCOLS
    }
    # pattern 3.6: airbus -> airplane (grounded); "collies" and "doggies" stay plural and match nothing.
    assert [(m.object, m.label) for m in found["official"].mentions] == [("airplane", "grounded")]
    # TextBlob: bus (not in the image), collie and doggie -> dog (not in the image).
    assert [(m.object, m.label) for m in found["evolens"].mentions] == [
        ("bus", "hallucinated"),
        ("dog", "hallucinated"),
        ("dog", "hallucinated"),
    ]


# ---------------------------------------------------------------------------- AMBER fallback lemmas
def test_fallback_lemma_keeps_the_vocabulary_form_over_a_non_word(tools: TextTools) -> None:
    vocabulary = {"tie", "necktie", "leave", "man"}
    assert tools.noun_lemma("ties", vocabulary) == "tie"  # pattern's "ty" is no English word
    assert tools.noun_lemma("neckties", vocabulary) == "necktie"
    assert tools.noun_lemma("leaves", vocabulary) == "leaf"  # a real word outside the vocabulary still wins
    judge = AmberJudge({"tie": ["necktie"], "man": []}, [], tools)
    judged = judge.judge("1", "Two men wear ties and neckties.", truth=["tie"], hallu=[])
    assert [(m.object, m.label) for m in judged.mentions] == [
        ("man", "hallucinated"),
        ("tie", "grounded"),
        ("necktie", "grounded"),
    ]
    assert judged.counts is not None and judged.counts["cover_hits"] == 1


def test_official_lines_name_the_protocol() -> None:
    result = evaluate(
        [Response("1", "Yes", {"task": "amber-discriminative", "truth": "yes"})],
        {},
        method="fallback",
        protocol="official",
    )
    line = official_lines(result)[0]  # then the relation dimension (the item has no type)
    assert line.startswith("AMBER discriminative, overall (as its script prints it, official protocol)")
    assert "Accuracy 99.9" in line  # 1 / 1.001
