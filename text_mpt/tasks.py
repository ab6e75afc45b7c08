"""Text-to-text task formats: inputs, natural-language verbalizers, labels and metrics.

Every task maps a raw row (Hugging Face hub format *or* the local JSON Lines of
``shared/data``) to an :class:`Example`: an input text, the candidate answers
(verbalizers) and the index of the gold candidate. Rank classification scores each
candidate; generation must produce one of them.

Built-in tasks: GLUE ``mnli qnli qqp sst2 rte mrpc cola stsb`` and SuperGLUE
``boolq cb copa superglue_rte wic wsc multirc``. :func:`custom_task` builds a task
from an input template and a label list.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from mvlpt.core.errors import ConfigError, DataError

#: metrics a task may report (see :mod:`text_mpt.metrics`)
METRICS = ("accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman")


@dataclass
class Example:
    """One formatted example.

    Attributes:
        input_text: encoder input (the soft prompt is prepended to its embeddings).
        candidates: answer texts; rank classification picks one of them.
        label: index of the gold candidate (None when unlabelled, e.g. at inference).
        value: gold number of a regression task (STS-B), else None.
    """

    input_text: str
    candidates: list[str]
    label: int | None = None
    value: float | None = None


Row = Mapping[str, Any]


@dataclass(frozen=True)
class TaskSpec:
    """How to turn rows of one task into :class:`Example` s.

    Attributes:
        name: task name (also the metric prefix).
        label_names: class names in label-index order (hub order).
        verbalizers: answer text per class (empty when candidates come from the row, e.g. COPA).
        template: ``row -> input text``.
        metrics: metrics reported; their mean is the task's ``score``.
        row_candidates: ``row -> candidate texts`` for per-example candidates.
        expand: ``row -> rows`` for nested formats (local MultiRC: one line per passage).
        regression: ``(low, high, step)`` of a regression task; candidates are the grid values.
        hub / hub_splits: ``(path, config)`` and ``(train, eval)`` splits on the Hugging Face hub.
        local_dir / local_splits: folder under ``data_root`` and its ``(train, eval)`` split files.
        label_field: the row key holding the label.
    """

    name: str
    label_names: tuple[str, ...]
    verbalizers: tuple[str, ...]
    template: Callable[[Row], str]
    metrics: tuple[str, ...] = ("accuracy",)
    row_candidates: Callable[[Row], list[str]] | None = None
    expand: Callable[[Row], Iterable[Row]] | None = None
    regression: tuple[float, float, float] | None = None
    hub: tuple[str, str | None] | None = None
    hub_splits: tuple[str, str] = ("train", "validation")
    local_dir: str | None = None
    local_splits: tuple[str, str] = ("train", "dev")
    label_field: str = "label"

    @property
    def num_classes(self) -> int:
        return len(self.candidates_grid()) if self.regression else len(self.label_names)

    def candidates_grid(self) -> list[str]:
        """Regression grid as texts (e.g. ``0.0, 0.2, ..., 5.0``)."""
        assert self.regression is not None
        lo, hi, step = self.regression
        n = int(round((hi - lo) / step)) + 1
        return [f"{lo + i * step:.1f}" for i in range(n)]

    def rows(self, row: Row) -> Iterable[Row]:
        return self.expand(row) if self.expand is not None else (row,)

    def example(self, row: Row, labelled: bool = True) -> Example:
        """Format one (flat) row. ``labelled=False`` accepts a row without a label."""
        text = self.template(row)
        if self.regression is not None:
            cands = self.candidates_grid()
        elif self.row_candidates is not None:
            cands = self.row_candidates(row)
        else:
            cands = list(self.verbalizers)
        has_label = row.get(self.label_field) is not None or row.get("label_name") is not None
        if not has_label:
            if labelled:
                raise DataError(f"task {self.name!r}: row has no {self.label_field!r}; keys are {sorted(row)}")
            return Example(text, cands)
        if self.regression is not None:
            value = self.parse_value(row)
            lo, _, step = self.regression
            idx = min(len(cands) - 1, max(0, int(round((value - lo) / step))))
            return Example(text, cands, idx, value)
        return Example(text, cands, self.parse_label(row))

    def parse_value(self, row: Row) -> float:
        raw = row.get(self.label_field)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise DataError(f"task {self.name!r}: label {raw!r} is not a number") from None
        lo, hi, _ = self.regression  # type: ignore[misc]
        if not (lo <= value <= hi) or math.isnan(value):
            raise DataError(f"task {self.name!r}: label {value} is outside the range [{lo}, {hi}]")
        return value

    def parse_label(self, row: Row) -> int:
        """Label index from an int, a bool, a digit string or a class name (``label_name`` first)."""
        name = row.get("label_name")
        if isinstance(name, str) and name in self.label_names:
            return self.label_names.index(name)
        raw = row.get(self.label_field)
        if isinstance(raw, bool):
            idx = int(raw)
        elif isinstance(raw, int):
            idx = raw
        elif isinstance(raw, str) and raw in self.label_names:
            idx = self.label_names.index(raw)
        elif isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            idx = int(raw)
        else:
            raise DataError(
                f"task {self.name!r}: label {raw!r} is not in its label list {list(self.label_names)} "
                f"(nor an index 0..{len(self.label_names) - 1})"
            )
        if not 0 <= idx < len(self.label_names):
            hint = " (-1 marks an unlabelled test split: evaluate on a labelled split)" if idx == -1 else ""
            raise DataError(
                f"task {self.name!r}: label index {idx} is out of range for labels {list(self.label_names)}{hint}"
            )
        return idx


def field_of(row: Row, *names: str) -> Any:
    """The first of ``names`` present in ``row`` (hub and local formats name fields differently)."""
    for n in names:
        if "." in n:
            head, sub = n.split(".", 1)
            inner = row.get(head)
            if isinstance(inner, Mapping) and inner.get(sub) is not None:
                return inner[sub]
        elif row.get(n) is not None:
            return row[n]
    raise DataError(f"row has none of the fields {list(names)}; found {sorted(row)}")


def _pair(a: tuple[str, ...], b: tuple[str, ...], la: str, lb: str) -> Callable[[Row], str]:
    return lambda r: f"{la}: {field_of(r, *a)} {lb}: {field_of(r, *b)}"


def _single(a: tuple[str, ...], la: str) -> Callable[[Row], str]:
    return lambda r: f"{la}: {field_of(r, *a)}"


def _wsc(r: Row) -> str:
    s1, s2 = field_of(r, "span1_text", "target.span1_text"), field_of(r, "span2_text", "target.span2_text")
    return f"text: {field_of(r, 'text')} question: does \"{s2}\" refer to \"{s1}\"?"


def _copa(r: Row) -> str:
    q = field_of(r, "question")
    ask = "What was the cause?" if q == "cause" else "What happened as a result?"
    return f"premise: {field_of(r, 'premise')} question: {ask} option1: {field_of(r, 'choice1')} option2: {field_of(r, 'choice2')}"


def _multirc_expand(row: Row) -> Iterable[Row]:
    """Local SuperGLUE MultiRC (one line per passage) → one row per answer; hub rows are flat already."""
    passage = row.get("passage")
    if not isinstance(passage, Mapping):
        yield row
        return
    for q in passage.get("questions", []):
        for a in q.get("answers", []):
            yield {"paragraph": passage.get("text", ""), "question": q.get("question", ""), "answer": a.get("text", ""),
                   "label": a.get("label"), "label_name": a.get("label_name")}


_PREM, _HYP = ("premise", "sentence1", "text_a"), ("hypothesis", "sentence2", "text_b")
_S1, _S2 = ("sentence1", "question1", "question", "text_a"), ("sentence2", "question2", "sentence", "text_b")
_SENT = ("sentence", "text_a")
_YN = ("no", "yes")


def _glue(name: str, labels: tuple[str, ...], verbs: tuple[str, ...], template, local: str, metrics=("accuracy",),
          eval_split: str = "validation", **kw) -> TaskSpec:
    return TaskSpec(name, labels, verbs, template, metrics, hub=("nyu-mll/glue", name), hub_splits=("train", eval_split),
                    local_dir=f"glue/{local}", local_splits=("train", "dev"), **kw)


def _sg(name: str, labels: tuple[str, ...], verbs: tuple[str, ...], template, local: str, metrics=("accuracy",),
        hub_config: str | None = None, **kw) -> TaskSpec:
    return TaskSpec(name, labels, verbs, template, metrics, hub=("aps/super_glue", hub_config or name),
                    local_dir=f"superglue/{local}", local_splits=("train", "val"), **kw)


_ENT = ("entailment", "not_entailment")
BUILTIN: dict[str, TaskSpec] = {t.name: t for t in [
    _glue("mnli", ("entailment", "neutral", "contradiction"), ("yes", "maybe", "no"), _pair(_PREM, _HYP, "premise", "hypothesis"),
          "MNLI", eval_split="validation_matched"),
    _glue("qnli", _ENT, ("yes", "no"), _pair(("question", "text_a"), ("sentence", "text_b"), "question", "sentence"), "QNLI"),
    _glue("qqp", ("not_duplicate", "duplicate"), _YN, _pair(("question1", "text_a"), ("question2", "text_b"), "question1", "question2"),
          "QQP", metrics=("accuracy", "f1")),
    _glue("sst2", ("negative", "positive"), ("negative", "positive"), _single(_SENT, "sentence"), "SST-2"),
    _glue("rte", _ENT, ("yes", "no"), _pair(_S1, _S2, "sentence1", "sentence2"), "RTE"),
    _glue("mrpc", ("not_equivalent", "equivalent"), _YN, _pair(_S1, _S2, "sentence1", "sentence2"), "MRPC", metrics=("accuracy", "f1")),
    _glue("cola", ("unacceptable", "acceptable"), ("unacceptable", "acceptable"), _single(_SENT, "sentence"), "CoLA", metrics=("mcc",)),
    _glue("stsb", (), (), _pair(_S1, _S2, "sentence1", "sentence2"), "STS-B", metrics=("pearson", "spearman"), regression=(0.0, 5.0, 0.2)),
    _sg("boolq", ("false", "true"), _YN, lambda r: f"question: {field_of(r, 'question')}? passage: {field_of(r, 'passage')}", "BoolQ"),
    _sg("cb", ("entailment", "contradiction", "neutral"), ("yes", "no", "maybe"), _pair(_PREM, _HYP, "premise", "hypothesis"), "CB",
        metrics=("accuracy", "macro_f1")),
    _sg("copa", ("choice1", "choice2"), (), _copa, "COPA", row_candidates=lambda r: [field_of(r, "choice1"), field_of(r, "choice2")]),
    _sg("superglue_rte", _ENT, ("yes", "no"), _pair(_PREM, _HYP, "premise", "hypothesis"), "RTE", hub_config="rte"),
    _sg("wic", ("false", "true"), _YN, lambda r: f"word: {field_of(r, 'word')} sentence1: {field_of(r, 'sentence1')} "
        f"sentence2: {field_of(r, 'sentence2')}", "WiC"),
    _sg("wsc", ("false", "true"), _YN, _wsc, "WSC", hub_config="wsc.fixed"),
    _sg("multirc", ("false", "true"), _YN, lambda r: f"question: {field_of(r, 'question')} answer: {field_of(r, 'answer')} "
        f"paragraph: {field_of(r, 'paragraph')}", "MultiRC", metrics=("f1", "accuracy"), expand=_multirc_expand),
]}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "sg_rte": "superglue_rte", "superglue-rte": "superglue_rte"}


def canonical_name(name: str) -> str:
    n = name.strip().lower()
    return _ALIASES.get(n, n)


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        raise DataError(f"template field {{{key}}} is not in the row; the row has {sorted(self)}")


def custom_task(name: str, template: str, labels: Sequence[str], verbalizers: Sequence[str] = (),
                label_field: str = "label", metrics: Sequence[str] = ("accuracy",)) -> TaskSpec:
    """A user-defined task: ``template`` uses ``{field}`` placeholders of the rows; ``labels`` is the
    label list (row labels are names from it or indices into it); ``verbalizers`` (default: the labels)
    are the answer texts."""
    if canonical_name(name) in BUILTIN:
        raise ConfigError(f"custom task name {name!r} clashes with a built-in task; choose another name")
    if not labels:
        raise ConfigError(f"custom task {name!r} needs a non-empty label list (tasks[].labels)")
    verbs = tuple(verbalizers) if verbalizers else tuple(labels)
    if len(verbs) != len(labels):
        raise ConfigError(f"custom task {name!r}: {len(verbs)} verbalizers for {len(labels)} labels")
    if len(set(verbs)) != len(verbs):
        raise ConfigError(f"custom task {name!r}: verbalizers must be distinct, found {list(verbs)}")
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ConfigError(f"custom task {name!r}: unknown metrics {bad}; choose from {list(METRICS)}")
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    if not fields:
        raise ConfigError(f"custom task {name!r}: template {template!r} has no {{field}} placeholder")
    return TaskSpec(name, tuple(labels), verbs, lambda r: template.format_map(_Fields(r)), tuple(metrics),
                    label_field=label_field, local_splits=("train", "dev"))


def get_task(name: str) -> TaskSpec:
    """A built-in task by name (case-insensitive; ``sst-2`` and ``sts-b`` accepted)."""
    key = canonical_name(name)
    if key not in BUILTIN:
        import difflib

        close = difflib.get_close_matches(key, list(BUILTIN), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown task {name!r}{hint} Built-in tasks: {', '.join(BUILTIN)}; "
            "or define a custom task with tasks[].template and tasks[].labels"
        )
    return BUILTIN[key]


def examples_from_rows(spec: TaskSpec, rows: Iterable[Row], labelled: bool = True) -> list[Example]:
    """Format raw rows (expanding nested ones)."""
    out = []
    for i, row in enumerate(rows):
        for flat in spec.rows(row):
            try:
                out.append(spec.example(flat, labelled))
            except DataError as e:
                raise DataError(f"row {i}: {e}") from None
    return out


__all__ = ["BUILTIN", "Example", "METRICS", "TaskSpec", "canonical_name", "custom_task", "examples_from_rows",
           "field_of", "get_task"]
