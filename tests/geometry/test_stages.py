"""Stage groups: derived from critical/mutation layers, the paper's, and user-given."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.errors import SettingsError
from evolens.geometry.stages import StageGroup, normalize_groups, paper_stage_groups, stage_groups


def _ranges(groups):
    return [(g.name, g.layers[0], g.layers[-1]) for g in groups]


def test_groups_from_critical_and_mutation():
    assert _ranges(stage_groups(32, 18, 27)) == [
        ("rapid evolution", 1, 17),
        ("stabilisation", 18, 26),
        ("mutation", 27, 32),
    ]
    assert _ranges(stage_groups(32, 18, 27, include_embedding=True))[0] == ("rapid evolution", 0, 17)


def test_groups_with_one_or_no_layer():
    assert _ranges(stage_groups(32, 18)) == [("rapid evolution", 1, 17), ("stabilisation", 18, 32)]
    assert _ranges(stage_groups(32, mutation_layer=30)) == [("before mutation", 1, 29), ("mutation", 30, 32)]
    assert _ranges(stage_groups(8)) == [("all layers", 1, 8)]
    # a critical layer at (or before) the first mapped layer leaves no rapid-evolution group
    assert [g.name for g in stage_groups(8, 1)] == ["stabilisation"]
    assert [g.name for g in stage_groups(8, 0, 5)] == ["stabilisation", "mutation"]
    assert _ranges(stage_groups(8, 0, include_embedding=True)) == [("stabilisation", 0, 8)]
    # -1 is the analysis detectors' "not found", like None
    assert stage_groups(8, -1, -1) == stage_groups(8)
    assert stage_groups(8, np.int64(3)) == stage_groups(8, 3)


@pytest.mark.parametrize(
    ("critical", "mutation", "match"),
    [
        (-2, None, "critical_layer"),
        (None, 0, "mutation_layer"),
        (2.0, None, "critical_layer"),
        (33, None, "critical_layer"),
        (18, 18, "after"),
        (20, 10, "after"),
        (None, 40, "mutation_layer"),
        (True, None, "critical_layer"),
    ],
)
def test_bad_layers(critical, mutation, match):
    with pytest.raises(SettingsError, match=match):
        stage_groups(32, critical, mutation)


def test_paper_groups():
    groups = paper_stage_groups()
    assert _ranges(groups) == [
        ("initial", 1, 2),
        ("rapid evolution", 3, 18),
        ("stabilisation", 19, 31),
        ("final", 32, 32),
    ]
    assert sum(len(g.layers) for g in groups) == 32
    assert _ranges(paper_stage_groups(40, 22))[2] == ("stabilisation", 23, 39)
    with pytest.raises(SettingsError):
        paper_stage_groups(4)
    with pytest.raises(SettingsError):
        paper_stage_groups(32, 31)


def test_labels():
    assert StageGroup("x", (3, 4, 5)).label == "x (3–5)"
    assert StageGroup("x", (7,)).label == "x (7)"
    assert StageGroup("x", (1, 3)).label == "x (1, 3)"
    assert StageGroup.from_dict(StageGroup("x", (1, 3)).to_dict()) == StageGroup("x", (1, 3))


def test_user_groups_must_partition_the_layers():
    layers = range(1, 9)
    ok = normalize_groups({"early": [3, 1, 2], "late": range(4, 9)}, layers)
    assert ok == (StageGroup("early", (1, 2, 3)), StageGroup("late", (4, 5, 6, 7, 8)))
    with pytest.raises(SettingsError, match="in no group"):
        normalize_groups({"early": [1, 2]}, layers)
    with pytest.raises(SettingsError, match="both group"):
        normalize_groups({"a": range(1, 5), "b": range(4, 9)}, layers)
    with pytest.raises(SettingsError, match="not mapped"):
        normalize_groups({"a": range(0, 9)}, layers)
    with pytest.raises(SettingsError, match="no layers"):
        normalize_groups([StageGroup("a", tuple(range(1, 9))), StageGroup("b", ())], layers)
    with pytest.raises(SettingsError, match="unique"):
        normalize_groups([StageGroup("a", (1, 2, 3, 4)), StageGroup("a", (5, 6, 7, 8))], layers)
    with pytest.raises(SettingsError, match="empty"):
        normalize_groups({}, layers)
