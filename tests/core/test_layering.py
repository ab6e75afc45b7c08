"""The floors of the house: the core imports no head, no head imports the other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: Path) -> set[tuple[str, str]]:
    found = set()
    for f in package.rglob("*.py"):
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {(str(f.relative_to(ROOT)), a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(f.relative_to(ROOT)), node.module))
    return found


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[tuple[str, str]]:
    return sorted((f, m) for f, m in _imports(ROOT / package) if m.split(".")[0] in forbidden or m.startswith(forbidden))


def test_core_imports_no_head_and_no_backbone_library():
    bad = _offenders("mvlpt/core", ("open_clip", "transformers", "text_mpt", "datasets_vl", "mvlpt.clip", "peft", "timm"))
    assert not bad, f"mvlpt/core must not import heads or backbone libraries: {bad}"


def test_heads_do_not_import_each_other():
    assert not _offenders("text_mpt", ("mvlpt.clip", "open_clip", "datasets_vl"))
    assert not _offenders("mvlpt/clip", ("text_mpt",))
    assert not _offenders("datasets_vl", ("text_mpt", "mvlpt.clip"))
