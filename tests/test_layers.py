"""The house's one rule, checked on the source: a stage imports only its own stage or lower ones (README, "How
evolens is laid out"). Every import counts — inside functions and under ``TYPE_CHECKING`` too."""

from __future__ import annotations

import ast
from pathlib import Path

import evolens

#: The stages, lowest first; a top-level module or package of ``evolens`` belongs to exactly one.
STAGES: tuple[frozenset[str], ...] = tuple(
    frozenset(names.split())
    for names in (
        "errors _version files envelope",
        "models capture parallel",
        "lens",
        "metrics",
        "trace",
        "api",
        "analysis",
        "experiments geometry decoding",
        "data",
        "hallucination",
        "store",
        "viz",
        "report",
        "runs",
        "toy testing demo",
        "cli",
    )
)
ROOT = Path(evolens.__file__).parent


def _stage(part: str) -> int:
    for rank, names in enumerate(STAGES):
        if part in names:
            return rank
    raise AssertionError(f"evolens.{part} belongs to no stage: add it to STAGES and to the README's layout")


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "evolens":
            # ``from evolens import toy`` takes a stage; ``from evolens import load`` the package root
            found.extend(
                (
                    f"evolens.{a.name}"
                    if (ROOT / a.name).is_dir() or (ROOT / f"{a.name}.py").is_file()
                    else "evolens",
                    node.lineno,
                )
                for a in node.names
            )
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
    return [(name, line) for name, line in found if name == "evolens" or name.startswith("evolens.")]


def _part(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def test_every_module_belongs_to_a_stage() -> None:
    parts = {_part(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    for part in parts:
        _stage(part)


def test_no_stage_imports_a_higher_one_or_the_package_root() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        part = _part(path)
        if part == "__init__":
            continue  # the package root gathers the public names of every stage
        for name, line in _imports(path):
            target = name.split(".")[1] if "." in name else "__init__"
            if target == "__init__":
                if part != "cli":  # the command line, at the top, may use the public package
                    wrong.append(
                        f"{path.relative_to(ROOT)}:{line} imports the package root (import the stage)"
                    )
            elif _stage(target) > _stage(part):
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({part}) imports {name} (a higher stage)")
    assert not wrong, "\n".join(wrong)
