"""A small labelled run of the shipped toy LVLM with hidden states, for the detector tests (``evolens detect``)."""

from __future__ import annotations

from pathlib import Path


def toy_run(root: Path) -> Path:
    """Trace 2 typical + 6 atypical held-out toy scenes (64 items: captions, yes/no and one-word questions; 4 new
    tokens, hidden states stored) into ``root / "run"``; ~30 s on two cores."""
    import evolens
    from evolens import toy
    from tests.run_options import run_options

    data = toy.export_testset(root / "set", n_typical=2, n_atypical=6)
    evolens.run(
        toy.model_dir(),
        toy.ToyTestSet(data),
        root / "run",
        hidden_states=True,
        **run_options(max_new_tokens=4, batch_size=8, device="cpu", progress=False, figures=False),
    )
    return root / "run"
