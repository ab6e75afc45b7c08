"""Prompt templates: the standard single template, CoOp's per-dataset templates and the
ensemble used for zero-shot CLIP evaluation. ``{}`` is the class name (the answer for VQA);
VQA templates also have a ``{question}`` slot. All are overridable in the dataset config
(``templates``, ``ensemble_templates``)."""

from __future__ import annotations

DEFAULT_TEMPLATE = "a photo of a {}."
VQA_TEMPLATE = "question: {question} answer: {}."

# CoOp's CUSTOM_TEMPLATES (Zhou et al. 2022) and a few for the extra datasets.
DATASET_TEMPLATES: dict[str, str] = {
    "imagenet": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "food101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
    "cifar10": "a photo of a {}.",
    "cifar100": "a photo of a {}.",
    "mnist": "a photo of the digit {}.",
    "fashion_mnist": "a photo of a {}, a type of clothing.",
    "flowers5": "a photo of a {}, a type of flower.",
    "sign_digits": "a photo of a hand showing the number {}.",
    "digits": "a photo of the digit {}.",
    "easy_vqa_shape": "a photo of a {}.",
    "easy_vqa_color": "a photo of a {} shape.",
    "vqav2": VQA_TEMPLATE,
    "easy_vqa": VQA_TEMPLATE,
}

# CoOp's IMAGENET_TEMPLATES_SELECT: the 7-template ensemble for zero-shot CLIP (from CLIP's 80).
ENSEMBLE_TEMPLATES: list[str] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]

DATASET_ENSEMBLES: dict[str, list[str]] = {
    "mnist": ['a photo of the number: "{}".', "a photo of the digit {}.", "a handwritten {}."],
    "digits": ['a photo of the number: "{}".', "a photo of the digit {}.", "a blurry photo of the digit {}."],
    "eurosat": ["a centered satellite photo of {}.", "a centered satellite photo of a {}.",
                "a centered satellite photo of the {}."],
    "dtd": ["a photo of a {} texture.", "a photo of a {} pattern.", "a photo of a {} thing.", "{} texture."],
    "easy_vqa_color": ["a photo of a {} shape.", "a {} shape.", "a drawing of a {} shape."],
    "vqav2": [VQA_TEMPLATE, "Q: {question} A: {}"],
    "easy_vqa": [VQA_TEMPLATE, "Q: {question} A: {}"],
}


def templates_for(key: str, task_type: str = "classification") -> tuple[list[str], list[str]]:
    """``(templates, ensemble)`` for a registry key: the dataset's own template first, then the
    ensemble (the dataset's template is always a member of its ensemble)."""
    default = VQA_TEMPLATE if task_type == "vqa" else DEFAULT_TEMPLATE
    single = DATASET_TEMPLATES.get(key, default)
    ensemble = list(DATASET_ENSEMBLES.get(key, [default] if task_type == "vqa" else ENSEMBLE_TEMPLATES))
    if single not in ensemble:
        ensemble.insert(0, single)
    return [single], ensemble


def format_prompt(template: str, classname: str, question: str | None = None) -> str:
    """Fill a template: ``{}`` ← class name / answer, ``{question}`` ← the VQA question."""
    return template.format(classname, question=question or "")
