"""Small datasets in the benchmarks' real formats, written by the tests (images made with PIL).

The responses below come with hand-counted answers (see the tests for the arithmetic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 32)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ AMBER
AMBER_RELATION = {
    "dog": [],
    "cat": [],
    "person": ["man", "woman", "people"],
    "grass": ["ground"],
    "tree": ["forest"],
    "car": [],
    "camera": [],
    "sky": [],
    "ball": [],
    "beach": ["sand"],
    "sea": ["water"],
}
AMBER_SAFE_WORDS = ["camera", "light"]
AMBER_GENERATIVE = [
    {"id": 1, "type": "generative", "truth": ["dog", "person", "grass"], "hallu": ["cat", "car", "sky"]},
    {"id": 2, "type": "generative", "truth": ["beach", "sea"], "hallu": ["dog", "person"]},
    {"id": 3, "type": "generative", "truth": ["ball", "tree"], "hallu": ["dog"]},
]
AMBER_DISCRIMINATIVE = [
    {"id": 4, "type": "discriminative-hallucination", "truth": "yes"},
    {"id": 5, "type": "discriminative-attribute-state", "truth": "no"},
    {"id": 6, "type": "discriminative-attribute-number", "truth": "no"},
    {"id": 7, "type": "discriminative-relation", "truth": "yes"},
    {"id": 8, "type": "relation", "truth": "no"},
]
#: Responses with hand-counted judgements (fallback method): see tests/data/test_amber_eval.py.
AMBER_RESPONSES = {
    "1": "A man and two dogs play on the grass near a tree. A cat watches a car. Dogs love the camera.",
    "2": "The beach has sand and water under the sky.",
    "3": "A red ball.",
    "4": "Yes, there is.",
    "5": "No.",
    "6": "Yes",
    "7": "Maybe.",
    "8": "no",
}


def write_amber(root: Path) -> Path:
    """AMBER's ``data/`` folder: queries, annotations, relation, safe words and images."""
    data = root / "data"
    generative = [
        {"id": a["id"], "image": f"AMBER_{a['id']}.jpg", "query": "Describe this image."}
        for a in AMBER_GENERATIVE
    ]
    discriminative = [
        {"id": a["id"], "image": f"AMBER_{(a['id'] % 3) + 1}.jpg", "query": f"Is question {a['id']} true?"}
        for a in AMBER_DISCRIMINATIVE
    ]
    write_json(data / "query" / "query_generative.json", generative)
    write_json(data / "query" / "query_discriminative.json", discriminative)
    write_json(data / "query" / "query_all.json", generative + discriminative)
    write_json(data / "annotations.json", AMBER_GENERATIVE + AMBER_DISCRIMINATIVE)
    write_json(data / "relation.json", AMBER_RELATION)
    (data / "safe_words.txt").write_text("\n".join(AMBER_SAFE_WORDS), encoding="utf-8")
    for a in AMBER_GENERATIVE:
        write_image(data / "image" / f"AMBER_{a['id']}.jpg", seed=a["id"])
    return data


# ------------------------------------------------------------------------------------------------- POPE
POPE_QUESTIONS = [
    ("yes", "Yes, there is a dog."),
    ("no", "No, there is not."),
    ("no", "There is a cat in the image."),
    ("yes", "I do not see one."),
    ("yes", "Yes."),
    ("no", "no"),
]


def write_pope(root: Path) -> tuple[Path, Path]:
    """An image folder and a POPE question file (JSON Lines)."""
    images = root / "val2014"
    lines = []
    for index, (label, _) in enumerate(POPE_QUESTIONS, start=1):
        name = f"COCO_val2014_{index:012d}.jpg"
        write_image(images / name, seed=100 + index)
        lines.append(
            json.dumps(
                {
                    "question_id": index,
                    "image": name,
                    "text": f"Is there a thing {index} in the image?",
                    "label": label,
                }
            )
        )
    questions = root / "coco_pope_random.json"
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return images, questions


# ------------------------------------------------------------------------------------------------- COCO
CHAIR_SYNONYMS = [
    "person, man, woman, boy, girl, people",
    "dog, puppy",
    "cat, kitten",
    "dining table, table, desk",
    "hot dog",
    "teddy bear",
    "toilet",
    "wine glass",
    "elephant",
]
COCO_CATEGORIES = {
    1: "person",
    18: "dog",
    17: "cat",
    67: "dining table",
    58: "hot dog",
    88: "teddy bear",
    70: "toilet",
    46: "wine glass",
    22: "elephant",
}
COCO_IMAGES = {
    11: (["dog", "person"], ["A man walks a dog.", "A person with a puppy near a table."]),
    22: (["toilet"], ["A white toilet in a bathroom."]),
    33: (["wine glass"], ["Wine glasses on a table."]),
}
COCO_RESPONSES = {
    "11": "Two men and a puppy sit at the desk eating hot dogs with a cat.",
    "22": "A toilet seat next to a baby elephant and a teddy bear.",
    "33": "A glass of wine.",
}


def write_coco(root: Path) -> dict[str, Path]:
    """COCO captions and instances files, CHAIR's synonym list and the images."""
    images = root / "val2014"
    by_name = {v: k for k, v in COCO_CATEGORIES.items()}
    image_entries, caption_entries, instance_entries = [], [], []
    for image_id, (objects, captions) in COCO_IMAGES.items():
        name = f"COCO_val2014_{image_id:012d}.jpg"
        write_image(images / name, seed=image_id)
        image_entries.append({"id": image_id, "file_name": name, "width": 40, "height": 32})
        caption_entries += [
            {"id": len(caption_entries) + 1, "image_id": image_id, "caption": c} for c in captions
        ]
        instance_entries += [
            {"id": len(instance_entries) + 1, "image_id": image_id, "category_id": by_name[o]}
            for o in objects
        ]
    categories = [{"id": k, "name": v, "supercategory": "thing"} for k, v in COCO_CATEGORIES.items()]
    captions = write_json(
        root / "captions_val2014.json", {"images": image_entries, "annotations": caption_entries}
    )
    instances = write_json(
        root / "instances_val2014.json",
        {"images": image_entries, "annotations": instance_entries, "categories": categories},
    )
    synonyms = root / "synonyms.txt"
    synonyms.write_text("\n".join(CHAIR_SYNONYMS) + "\n", encoding="utf-8")
    return {"root": images, "captions": captions, "instances": instances, "synonyms": synonyms}


# ----------------------------------------------------------------------------------------------- folder
def write_folder(root: Path, n: int = 4, *, corrupt: bool = False) -> Path:
    """An image folder with ``n`` PNG images (``img0.png`` ...) in two sub-folders, plus a corrupt one if asked."""
    for i in range(n):
        write_image(root / ("a" if i % 2 == 0 else "b") / f"img{i}.png", seed=i)
    if corrupt:
        (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root
