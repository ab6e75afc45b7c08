"""Registry of well-known prompt-tuning datasets: name → on-disk layout(s) and how to get the files.

Every path is under the data root (``root`` in the config, else ``$MVLPT_DATA``, else ``./data``).
A dataset may have several layouts (e.g. CoOp's Caltech101 and the Parquet copy in
``../shared/data``); the first whose marker file exists is used. See ``datasets_vl/README.md``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

COOP_DOC = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"


@dataclass(frozen=True)
class Layout:
    """One way a dataset can sit on disk: ``source`` reads ``root/subdir`` with ``spec`` settings;
    ``marker`` (relative to ``root/subdir``) must exist; ``get`` says how to obtain the files."""

    source: str
    subdir: str
    marker: str
    get: str
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task_type: str
    layouts: tuple[Layout, ...] = ()
    hub: dict[str, Any] | None = None  # Hugging Face hub spec used with allow_download: true
    builtin: str | None = None  # a source with no files (easy_vqa, digits)
    rename: dict[str, str] | None = None  # class-name fixes (CoOp's EuroSAT names)
    aliases: tuple[str, ...] = ()


def _coop(subdir: str, image_dir: str, split_file: str, get: str) -> Layout:
    return Layout("coop_split", subdir, split_file, f"{get}; put {split_file} (from CoOp, see {COOP_DOC}) in the same folder",
                  {"image_dir": image_dir, "split_file": split_file})


def _parquet(subdir: str, what: str) -> Layout:
    return Layout("hf", subdir, "train.parquet",
                  f"Hugging Face Parquet files {subdir}/train.parquet and {subdir}/test.parquet (columns image + "
                  f"ClassLabel 'label'; {what})",
                  {"data_files": {"train": "train.parquet", "test": "test.parquet"}})


SHARED = "the project's shared data folder ../shared/data has them"
EUROSAT_NAMES = {
    "AnnualCrop": "Annual Crop Land", "Forest": "Forest", "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road", "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings", "River": "River", "SeaLake": "Sea or Lake",
}

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo("imagenet", "classification", (Layout(
        "imagefolder", "imagenet", "images/train",
        "ILSVRC2012 from https://image-net.org: images/train/<wnid>/*.JPEG and images/val/<wnid>/*.JPEG (val sorted "
        f"into class folders), plus classnames.txt ('<wnid> <name>' per line, from CoOp: {COOP_DOC})",
        {"image_dir": "images", "split_names": {"train": "train", "test": "val"}}),)),
    DatasetInfo("caltech101", "classification", (
        _coop("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
              "101_ObjectCategories/ from https://data.caltech.edu/records/mzrjq-6wc02 extracted into caltech-101/"),
        _parquet("caltech101", SHARED)), aliases=("caltech",)),
    DatasetInfo("oxford_pets", "classification", (
        _coop("oxford_pets", "images", "split_zhou_OxfordPets.json",
              "images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ extracted into "
              "oxford_pets/ (images/, annotations/)"),), aliases=("pets",)),
    DatasetInfo("stanford_cars", "classification", (
        _coop("stanford_cars", ".", "split_zhou_StanfordCars.json",
              f"the Stanford Cars train/test images (cars_train/, cars_test/) in stanford_cars/, as in {COOP_DOC}"),),
        aliases=("cars",)),
    DatasetInfo("oxford_flowers", "classification", (
        _coop("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
              "102flowers.tgz from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ extracted into oxford_flowers/jpg/"),),
        aliases=("flowers102", "flowers")),
    DatasetInfo("food101", "classification", (
        _coop("food-101", "images", "split_zhou_Food101.json",
              "food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ extracted so that "
              "food-101/images/<class>/*.jpg exists"),), aliases=("food",)),
    DatasetInfo("fgvc_aircraft", "classification", (Layout(
        "fgvc_lists", "fgvc_aircraft", "variants.txt",
        "fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/; move the contents of "
        "its data/ folder (images/, variants.txt, images_variant_{train,val,test}.txt) into fgvc_aircraft/",
        {"image_dir": "images"}),), aliases=("aircraft", "fgvcaircraft")),
    DatasetInfo("sun397", "classification", (
        _coop("sun397", "SUN397", "split_zhou_SUN397.json",
              "SUN397.tar.gz from http://vision.princeton.edu/projects/2010/SUN/ extracted into sun397/SUN397/"),),
        aliases=("sun",)),
    DatasetInfo("dtd", "classification", (
        _coop("dtd", "images", "split_zhou_DescribableTextures.json",
              "dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/ extracted so that dtd/images/<class>/ "
              "exists"),), aliases=("describabletextures", "textures")),
    DatasetInfo("eurosat", "classification", (
        _coop("eurosat", "2750", "split_zhou_EuroSAT.json",
              "EuroSAT.zip (RGB) from https://github.com/phelber/EuroSAT extracted into eurosat/2750/"),),
        rename=EUROSAT_NAMES),
    DatasetInfo("ucf101", "classification", (
        _coop("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
              f"UCF-101-midframes.zip (the middle frame of each video, from CoOp: {COOP_DOC}) extracted into ucf101/"),)),
    DatasetInfo("cifar10", "classification", (_parquet("cifar10", SHARED),),
                hub={"hub_name": "uoft-cs/cifar10", "image_column": "img"}, aliases=("cifar-10",)),
    DatasetInfo("cifar100", "classification", (_parquet("cifar100", "e.g. exported from the hub dataset"),),
                hub={"hub_name": "uoft-cs/cifar100", "image_column": "img", "label_column": "fine_label"},
                aliases=("cifar-100",)),
    DatasetInfo("mnist", "classification", (_parquet("mnist", SHARED),), hub={"hub_name": "ylecun/mnist"}),
    DatasetInfo("fashion_mnist", "classification", (_parquet("fashion_mnist", SHARED),),
                hub={"hub_name": "zalando-datasets/fashion_mnist"}, aliases=("fashionmnist",)),
    DatasetInfo("flowers5", "classification", (_parquet("flowers5", SHARED),)),
    DatasetInfo("sign_digits", "classification", (_parquet("sign_digits", SHARED),)),
    DatasetInfo("vqav2", "vqa", (Layout(
        "vqav2", "vqav2", "v2_mscoco_train2014_annotations.json",
        "from https://visualqa.org/download.html: v2_OpenEnded_mscoco_{train,val}2014_questions.json and "
        "v2_mscoco_{train,val}2014_annotations.json, plus COCO train2014/ and val2014/ image folders "
        "(https://cocodataset.org), all in vqav2/; val2014 is used as the test split"),), aliases=("vqa", "vqa2")),
    DatasetInfo("easy_vqa", "vqa", builtin="easy_vqa", aliases=("easyvqa",)),
    DatasetInfo("easy_vqa_shape", "classification", builtin="easy_vqa_shape"),
    DatasetInfo("easy_vqa_color", "classification", builtin="easy_vqa_color", aliases=("easy_vqa_colour",)),
    DatasetInfo("digits", "classification", builtin="digits", aliases=("sklearn_digits",)),
]}

# CoOp class names (dataset classes) → registry keys.
_COOP_NAMES = {"ImageNet": "imagenet", "Caltech101": "caltech101", "OxfordPets": "oxford_pets",
               "StanfordCars": "stanford_cars", "OxfordFlowers": "oxford_flowers", "Flowers102": "oxford_flowers",
               "Food101": "food101", "FGVCAircraft": "fgvc_aircraft", "SUN397": "sun397",
               "DescribableTextures": "dtd", "EuroSAT": "eurosat", "UCF101": "ucf101"}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_LOOKUP: dict[str, str] = {}
for _n, _info in DATASETS.items():
    for _a in (_n, *_info.aliases):
        _LOOKUP[_key(_a)] = _n
for _a, _n in _COOP_NAMES.items():
    _LOOKUP[_key(_a)] = _n


def lookup(name: str) -> DatasetInfo | None:
    """Registry entry for a name, case/underscore/hyphen-insensitive (``"OxfordPets"`` → ``oxford_pets``)."""
    key = _LOOKUP.get(_key(name))
    return DATASETS[key] if key else None


def describe_layouts(info: DatasetInfo, root: str = "<data root>") -> str:
    """Human-readable "what to download and where" for a registry entry."""
    lines = [f"  - {root}/{lay.subdir}/: {lay.get}" for lay in info.layouts]
    if info.hub:
        lines.append(f"  - or set allow_download: true to fetch {info.hub['hub_name']!r} from the Hugging Face hub")
    return "\n".join(lines)
