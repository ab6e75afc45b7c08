"""The floors of the house: the core imports no head, no head imports the other, the model layers never
import the pipelines or the pretraining wings, and there is no import cycle anywhere (imports inside
functions included: a cycle broken by a late import is still a cycle in the design)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mvlpt", "text_mpt", "datasets_vl")


def _module_name(f: Path) -> str:
    parts = list(f.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(f): f for p in PACKAGES for f in (ROOT / p).rglob("*.py")}


MODULES = _modules()


def _resolve(importer: str, is_pkg: bool, node: ast.AST) -> list[str]:
    """The project modules an import statement loads (``from a import b``: ``a.b`` when it is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = importer.split(".") if is_pkg else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    return [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (functions included), except those under ``if TYPE_CHECKING:``
    (annotations only: never executed)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, f in MODULES.items():
        tree = ast.parse(f.read_text(), filename=str(f))
        deps: set[str] = set()
        for node in _import_nodes(tree):
            for mod in _resolve(name, f.name == "__init__.py", node):
                while mod and mod not in MODULES:  # a name inside a module: the module
                    mod = mod.rpartition(".")[0]
                if mod and mod != name:
                    deps.add(mod)
        graph[name] = deps
    return graph


def _raw_imports(package: str) -> set[tuple[str, str]]:
    """(module, imported module) for every import of ``package``'s files, external ones included."""
    out = set()
    for name, f in MODULES.items():
        if name == package or name.startswith(package + "."):
            for node in _import_nodes(ast.parse(f.read_text())):
                out |= {(name, m) for m in _resolve(name, f.name == "__init__.py", node)}
    return out


def _offenders(package: str, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    return sorted((f, m) for f, m in _raw_imports(package)
                  if not f.startswith(skip) and any(m == x or m.startswith(x + ".") for x in forbidden))


def test_core_imports_no_head_and_no_backbone_library():
    bad = _offenders("mvlpt.core", ("open_clip", "transformers", "text_mpt", "datasets_vl", "mvlpt.clip", "peft", "timm"))
    assert not bad, f"mvlpt/core must not import heads or backbone libraries: {bad}"


def test_heads_do_not_import_each_other_and_datasets_vl_imports_no_head():
    assert not _offenders("text_mpt", ("mvlpt.clip", "open_clip", "datasets_vl"))
    assert not _offenders("mvlpt.clip", ("text_mpt",))
    assert not _offenders("datasets_vl", ("text_mpt", "mvlpt.clip"))


def test_model_layers_never_import_pipelines_or_pretraining():
    clip_upper = ("mvlpt.clip.pipeline", "mvlpt.clip.pretrain", "mvlpt.clip.cli", "mvlpt.clip.weights", "mvlpt.clip.entry")
    bad = _offenders("mvlpt.clip", clip_upper, skip=clip_upper)
    assert not bad, f"the CLIP model layer imports a pipeline / pretraining / CLI module: {bad}"
    text_upper = ("text_mpt.pipeline", "text_mpt.pretrain", "text_mpt.cli", "text_mpt.preflight", "text_mpt.inference",
                  "text_mpt.peft_io",
                  "text_mpt.entry")
    bad = [(f, m) for f, m in _offenders("text_mpt", text_upper, skip=text_upper) if f != "text_mpt"]
    assert not bad, f"the T5 model layer imports a pipeline / pretraining / CLI module: {bad}"


def test_no_import_cycle_anywhere():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_imports_inside_functions():
    """The checker itself: a late import inside a function is an edge."""
    graph = _graph()
    assert graph and all(isinstance(v, set) for v in graph.values())
    late = [name for name, f in MODULES.items()
            if any(isinstance(n, ast.FunctionDef) and any(isinstance(i, (ast.Import, ast.ImportFrom)) for i in ast.walk(n))
                   for n in ast.walk(ast.parse(f.read_text())))]
    assert late, "expected at least one module with a function-level import to exercise the checker"
