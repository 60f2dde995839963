"""The toy world: 64×64 images of one to three coloured shapes in named slots, with known truth.

Everything is procedural and seeded: a :class:`Scene` is a tuple of objects (shape, colour, slot) plus the jitter
that places them, and it renders to the same pixels every time. Two shapes carry a *language prior* on purpose:
hearts are red and moons are yellow in :data:`PRIOR_STRENGTH` of training scenes, so an atypically coloured heart
or moon at test time can make the model answer from the prior instead of the pixels — a hallucination whose cause
is known.

Words of the world (the toy tokenizer's vocabulary is built from these lists):

* colours :data:`COLORS`, shapes :data:`SHAPES`, slots :data:`SLOTS` (said as :data:`SLOT_PHRASES`);
* captions list the objects in slot order: ``"a red circle at the top , a blue square on the left and a green
  star at the bottom ."``;
* questions (:func:`questions`): colour of a shape, shape in a slot, colour of the shape in a slot, count,
  existence (present and absent shapes) and attribute yes/no, and "describe the image ."
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

IMAGE_SIZE = 64
COLORS: tuple[str, ...] = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "moon")
SLOTS: tuple[str, ...] = ("top", "left", "right", "bottom")
SLOT_PHRASES: dict[str, str] = {
    "top": "at the top",
    "left": "on the left",
    "right": "on the right",
    "bottom": "at the bottom",
}
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three")
#: The language priors: shape -> the colour it has in most training scenes.
PRIORS: dict[str, str] = {"heart": "red", "moon": "yellow"}
#: Share of training scenes in which a prior shape has its prior colour.
PRIOR_STRENGTH = 0.95

RGB: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "blue": (31, 90, 220),
    "green": (44, 160, 44),
    "yellow": (240, 215, 30),
    "purple": (140, 60, 180),
    "orange": (250, 130, 20),
    "white": (248, 248, 248),
    "black": (16, 16, 16),
}
BACKGROUND = (128, 128, 128)
#: Centre (x, y) of each slot on the 64×64 canvas.
SLOT_CENTERS: dict[str, tuple[int, int]] = {
    "top": (32, 13),
    "left": (13, 32),
    "right": (51, 32),
    "bottom": (32, 51),
}

QuestionKind = Literal["color", "shape", "slot_color", "count", "exists", "attribute", "describe"]
#: Kinds answered with one word (the VQA accuracy is taken over these).
ONE_WORD_KINDS: tuple[str, ...] = ("color", "shape", "slot_color", "count", "exists", "attribute")
DESCRIBE_PROMPT = "describe the image ."


@dataclass(frozen=True)
class Obj:
    """One object of a scene: its shape, colour and slot, and the jitter of its placement (pixels)."""

    shape: str
    color: str
    slot: str
    dx: int = 0
    dy: int = 0
    radius: int = 9

    @property
    def atypical(self) -> bool:
        """A prior shape in another colour than its prior (hearts not red, moons not yellow)."""
        return self.shape in PRIORS and self.color != PRIORS[self.shape]


@dataclass(frozen=True)
class Scene:
    """A scene: its objects in slot order (top, left, right, bottom)."""

    objects: tuple[Obj, ...]

    @property
    def atypical(self) -> bool:
        return any(o.atypical for o in self.objects)

    @property
    def shapes(self) -> list[str]:
        return [o.shape for o in self.objects]

    def find(self, shape: str) -> Obj | None:
        return next((o for o in self.objects if o.shape == shape), None)

    def at(self, slot: str) -> Obj | None:
        return next((o for o in self.objects if o.slot == slot), None)

    def to_dict(self) -> dict[str, object]:
        return {"objects": [o.__dict__.copy() for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Scene:
        objects = data["objects"]
        assert isinstance(objects, list)
        return cls(tuple(Obj(**o) for o in objects))


def _prior_color(rng: np.random.Generator, shape: str, prior_strength: float) -> str:
    if shape in PRIORS and rng.random() < prior_strength:
        return PRIORS[shape]
    options = [c for c in COLORS if c != PRIORS.get(shape)]
    return options[int(rng.integers(len(options)))]


def sample_scene(
    rng: np.random.Generator,
    *,
    prior_strength: float = PRIOR_STRENGTH,
    n_objects: int | None = None,
) -> Scene:
    """A random scene: 1-3 objects of distinct shapes in distinct slots; prior shapes take their prior colour
    with probability ``prior_strength`` (``0`` forces an atypical colour), every other colour uniformly."""
    n = int(rng.integers(1, 4)) if n_objects is None else n_objects
    slots = sorted(rng.choice(len(SLOTS), size=n, replace=False).tolist())
    shapes = rng.choice(len(SHAPES), size=n, replace=False).tolist()
    objects = []
    for slot_idx, shape_idx in zip(slots, shapes, strict=True):
        shape = SHAPES[shape_idx]
        if shape in PRIORS:
            color = _prior_color(rng, shape, prior_strength)
        else:
            color = COLORS[int(rng.integers(len(COLORS)))]
        dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
        objects.append(Obj(shape, color, SLOTS[slot_idx], dx, dy, int(rng.integers(8, 11))))
    return Scene(tuple(objects))


def sample_test_scene(rng: np.random.Generator, atypical: bool) -> Scene:
    """A held-out scene: ``atypical`` ones hold a heart or a moon in a non-prior colour, typical ones hold none."""
    if not atypical:
        return sample_scene(rng, prior_strength=1.0)
    while True:
        scene = sample_scene(rng, prior_strength=0.0)
        if scene.atypical:
            return scene


# ---------------------------------------------------------------------------------------------- rendering
def _mask(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Pixels of ``shape`` with centre at the origin and size ``r`` (x right, y down)."""
    if shape == "circle":
        return x**2 + y**2 <= r**2
    if shape == "square":
        s = 0.82 * r
        return (np.abs(x) <= s) & (np.abs(y) <= s)
    if shape == "triangle":
        return (y >= -r) & (y <= 0.8 * r) & (np.abs(x) <= (y + r) * 0.6)
    if shape == "star":
        rho = np.hypot(x, y)
        theta = np.arctan2(y, x) + np.pi / 2
        outline = r * (0.42 + 0.58 * np.abs(np.cos(2.5 * theta)) ** 2)
        return rho <= outline
    if shape == "heart":
        u, v = x / (0.9 * r), -(y + 0.1 * r) / (0.9 * r)
        return (u**2 + v**2 - 1) ** 3 - u**2 * v**3 <= 0
    if shape == "moon":
        return (x**2 + y**2 <= r**2) & ((x - 0.55 * r) ** 2 + (y + 0.1 * r) ** 2 > (0.8 * r) ** 2)
    raise ValueError(f"unknown shape {shape!r}")


_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def render_with_labels(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The scene's pixels ``[64, 64, 3]`` uint8 and a label map ``[64, 64]`` int (object index, -1 background)."""
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    labels = np.full((IMAGE_SIZE, IMAGE_SIZE), -1, dtype=np.int64)
    for idx, obj in enumerate(scene.objects):
        cx, cy = SLOT_CENTERS[obj.slot]
        mask = _mask(obj.shape, _XX - (cx + obj.dx), _YY - (cy + obj.dy), float(obj.radius))
        image[mask] = RGB[obj.color]
        labels[mask] = idx
    return image, labels


def render(scene: Scene) -> np.ndarray:
    """The scene's pixels, ``[64, 64, 3]`` uint8 RGB."""
    return render_with_labels(scene)[0]


# ---------------------------------------------------------------------------------------------- language
def phrase(obj: Obj) -> str:
    return f"a {obj.color} {obj.shape} {SLOT_PHRASES[obj.slot]}"


def caption(scene: Scene) -> str:
    """The scene's caption: its objects in slot order, ``"a red circle at the top and a blue square on the left ."``"""
    parts = [phrase(o) for o in scene.objects]
    head = " , ".join(parts[:-1])
    return (f"{head} and {parts[-1]}" if head else parts[0]) + " ."


def caption_words(text: str) -> list[str]:
    """A caption's words, lower-cased, with ``.`` and ``,`` as words of their own (however they were spaced)."""
    return text.lower().replace(".", " . ").replace(",", " , ").split()


def parse_caption(text: str) -> list[tuple[str | None, str, str | None]]:
    """``(colour, shape, slot)`` of every shape word in a caption (colour/slot ``None`` where not said next to it).

    Reads the model's own output, so it tolerates any order and missing words: a shape word takes the colour word
    right before it and the slot phrase right after it.
    """
    words = caption_words(text)
    found: list[tuple[str | None, str, str | None]] = []
    phrases = {tuple(p.split()): s for s, p in SLOT_PHRASES.items()}
    for i, word in enumerate(words):
        if word not in SHAPES:
            continue
        color = words[i - 1] if i > 0 and words[i - 1] in COLORS else None
        slot = phrases.get(tuple(words[i + 1 : i + 4]))
        found.append((color, word, slot))
    return found


def caption_prior_colors(scene: Scene, text: str) -> list[bool]:
    """For every atypically coloured object of ``scene`` that the caption names with a colour: was that colour its
    prior (a prior-driven error)?"""
    named = []
    for color, shape, _ in parse_caption(text):
        obj = scene.find(shape)
        if obj is not None and obj.atypical and color is not None:
            named.append(color == PRIORS[shape])
    return named


@dataclass(frozen=True)
class Question:
    """A question about a scene with its true answer.

    Attributes:
        kind: What it asks (see :data:`QuestionKind`).
        text: The question, as the model reads it (lower case, spaced punctuation).
        answer: The true answer (one word, or the caption for ``"describe"``).
        subject: The shape it is about, when it is about one (``None`` for count and describe).
        atypical: It asks about an atypically coloured prior shape (the probes of prior-driven errors).
        asked: The colour an ``"attribute"`` question asks about (``None`` for the other kinds).
    """

    kind: QuestionKind
    text: str
    answer: str
    subject: str | None = None
    atypical: bool = False
    asked: str | None = None

    @property
    def prior_answer(self) -> str | None:
        """The answer the language prior suggests, where it differs from the truth (colour questions)."""
        if self.kind in ("color", "slot_color") and self.subject in PRIORS and self.atypical:
            return PRIORS[self.subject]
        return None

    @property
    def prior_yes_no(self) -> str | None:
        """The answer the language prior suggests to a yes/no colour question about an atypically coloured prior
        shape, where it differs from the truth: "yes" when it asks the prior colour, "no" when it asks the true one."""
        if self.kind != "attribute" or not self.atypical or self.subject not in PRIORS or self.asked is None:
            return None
        prior = "yes" if self.asked == PRIORS[self.subject] else "no"
        return prior if prior != self.answer else None


def questions(scene: Scene, rng: np.random.Generator) -> list[Question]:
    """One question of every kind about ``scene`` (existence: one present and one absent shape; attribute: the
    true colour or another one, evenly), in a fixed order of kinds."""
    objs = scene.objects
    target = objs[int(rng.integers(len(objs)))]
    slot_obj = objs[int(rng.integers(len(objs)))]
    absent = [s for s in SHAPES if s not in scene.shapes]
    absent_shape = absent[int(rng.integers(len(absent)))]
    attr_obj = objs[int(rng.integers(len(objs)))]
    if rng.random() < 0.5:
        attr_color, attr_answer = attr_obj.color, "yes"
    else:
        # the prior colour is the most tempting wrong one: ask it half of the time for atypical prior shapes
        others = [c for c in COLORS if c != attr_obj.color]
        if attr_obj.atypical and rng.random() < 0.5:
            attr_color = PRIORS[attr_obj.shape]
        else:
            attr_color = others[int(rng.integers(len(others)))]
        attr_answer = "no"
    present = objs[int(rng.integers(len(objs)))]
    return [
        Question("color", f"what color is the {target.shape} ?", target.color, target.shape, target.atypical),
        Question(
            "shape",
            f"what shape is {SLOT_PHRASES[slot_obj.slot]} ?",
            slot_obj.shape,
            slot_obj.shape,
            slot_obj.atypical,
        ),
        Question(
            "slot_color",
            f"what color is the shape {SLOT_PHRASES[slot_obj.slot]} ?",
            slot_obj.color,
            slot_obj.shape,
            slot_obj.atypical,
        ),
        Question("count", "how many shapes are there ?", COUNT_WORDS[len(objs) - 1]),
        Question("exists", f"is there a {present.shape} ?", "yes", present.shape, present.atypical),
        Question("exists", f"is there a {absent_shape} ?", "no", absent_shape),
        Question(
            "attribute",
            f"is the {attr_obj.shape} {attr_color} ?",
            attr_answer,
            attr_obj.shape,
            attr_obj.atypical,
            attr_color,
        ),
        Question("describe", DESCRIBE_PROMPT, caption(scene), None, scene.atypical),
    ]


def vocabulary() -> list[str]:
    """Every word the world's captions, questions and answers use, in a fixed order."""
    words: list[str] = []
    for w in (
        *COLORS,
        *SHAPES,
        *SLOTS,
        *COUNT_WORDS,
        *"a the at on and , . ? what color is shape how many shapes are there yes no describe image".split(),
    ):
        if w not in words:
            words.append(w)
    return words
