"""Task formats, label parsing, data loading, truncation, few-shot sampling, metrics, config errors."""

import json
import math

import pytest

from tmpt_helpers import tokenizer

from mvlpt.core.errors import ConfigError, DataError
from text_mpt.config import TaskConfig, load_run_config
from text_mpt.data import TextCollator, TextTaskDataset, TruncationWarning, few_shot, load_examples, task_spec
from text_mpt.metrics import classification_metrics, compute_metrics, regression_metrics
from text_mpt.tasks import BUILTIN, Example, custom_task, examples_from_rows, get_task

HUB_ROWS = {
    "mnli": {"premise": "A man sleeps.", "hypothesis": "Someone rests.", "label": 0},
    "qnli": {"question": "Who?", "sentence": "Him.", "label": 1},
    "qqp": {"question1": "How?", "question2": "Why?", "label": 1},
    "sst2": {"sentence": "a fine film", "label": 1},
    "rte": {"sentence1": "A.", "sentence2": "B.", "label": 1},
    "mrpc": {"sentence1": "A.", "sentence2": "B.", "label": 0},
    "cola": {"sentence": "Him went.", "label": 0},
    "stsb": {"sentence1": "A.", "sentence2": "B.", "label": 3.14},
    "boolq": {"question": "is it", "passage": "It is.", "label": 1},
    "cb": {"premise": "P.", "hypothesis": "H.", "label": 2},
    "copa": {"premise": "It rained.", "choice1": "Wet.", "choice2": "Dry.", "question": "effect", "label": 0},
    "superglue_rte": {"premise": "P.", "hypothesis": "H.", "label": 1},
    "wic": {"word": "bank", "sentence1": "S1.", "sentence2": "S2.", "label": 0},
    "wsc": {"text": "Tom said he left.", "span1_text": "Tom", "span2_text": "he", "label": 1},
    "multirc": {"paragraph": "P.", "question": "Q?", "answer": "A.", "label": 1},
}

LOCAL_ROWS = {  # the JSON Lines of ../shared/data
    "mnli": {"text_a": "A.", "text_b": "B.", "label": "neutral", "label_name": "neutral"},
    "qqp": {"text_a": "A?", "text_b": "B?", "label": "1", "label_name": "duplicate"},
    "sst2": {"text_a": "fine", "text_b": None, "label": "0", "label_name": "negative"},
    "stsb": {"text_a": "A.", "text_b": "B.", "label": "4.000"},
    "boolq": {"question": "q", "passage": "p", "label": True},
    "cb": {"premise": "P.", "hypothesis": "H.", "label": "neutral"},
    "wsc": {"text": "T.", "target": {"span1_text": "Tom", "span2_text": "he"}, "label": False},
    "superglue_rte": {"premise": "P.", "hypothesis": "H.", "label": "not_entailment"},
}


def test_every_builtin_task_formats_hub_rows():
    assert set(HUB_ROWS) == set(BUILTIN)
    for name, row in HUB_ROWS.items():
        ex = get_task(name).example(row)
        assert ex.input_text and ex.candidates and 0 <= ex.label < len(ex.candidates), name
    assert get_task("copa").example(HUB_ROWS["copa"]).candidates == ["Wet.", "Dry."]
    sts = get_task("stsb").example(HUB_ROWS["stsb"])
    assert sts.value == pytest.approx(3.14) and sts.candidates[sts.label] == "3.2" and len(sts.candidates) == 26


def test_local_rows_and_label_forms():
    expected = {"mnli": "maybe", "qqp": "yes", "sst2": "negative", "stsb": "4.0", "boolq": "yes", "cb": "maybe",
                "wsc": "no", "superglue_rte": "no"}
    for name, row in LOCAL_ROWS.items():
        ex = get_task(name).example(row)
        assert ex.candidates[ex.label] == expected[name], name
    assert "does \"he\" refer to \"Tom\"" in get_task("wsc").example(LOCAL_ROWS["wsc"]).input_text
    nested = {"passage": {"text": "P.", "questions": [{"question": "Q?", "answers": [
        {"text": "a", "label": 0}, {"text": "b", "label": 1}]}]}}
    exs = examples_from_rows(get_task("multirc"), [nested])
    assert [e.label for e in exs] == [0, 1] and "answer: b" in exs[1].input_text


def test_bad_labels_and_tasks_are_clear_errors():
    with pytest.raises(DataError, match=r"label 'maybe' is not in its label list"):
        get_task("sst2").example({"sentence": "x", "label": "maybe"})
    with pytest.raises(DataError, match="out of range"):
        get_task("sst2").example({"sentence": "x", "label": 2})
    with pytest.raises(DataError, match="unlabelled test split"):
        get_task("rte").example({"sentence1": "x", "sentence2": "y", "label": -1})
    with pytest.raises(DataError, match="outside the range"):
        get_task("stsb").example({"sentence1": "x", "sentence2": "y", "label": 7})
    with pytest.raises(ConfigError, match="did you mean 'mnli'"):
        get_task("mlni")
    with pytest.raises(DataError, match=r"template field \{body\}"):
        custom_task("mine", "{body}", ["a", "b"]).example({"text": "x", "label": "a"})
    with pytest.raises(ConfigError, match="clashes"):
        custom_task("sst2", "{text}", ["a", "b"])
    assert get_task("SST-2").name == "sst2"


def test_custom_task_from_csv_with_few_shot(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("body,label\n" + "".join(f"text {i},{'yes' if i % 3 else 'no'}\n" for i in range(30)))
    tc = TaskConfig(name="mine", data_files={"train": str(path)}, template="Q: {body}", labels=["no", "yes"])
    exs = load_examples(tc, "train")
    assert len(exs) == 30 and exs[0].input_text == "Q: text 0" and exs[0].candidates == ["no", "yes"]
    shots = few_shot(exs, 4, seed=0)
    assert sorted(e.label for e in shots) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert few_shot(exs, 4, seed=0) == shots and few_shot(exs, 4, seed=1) != shots
    bad = tmp_path / "bad.csv"
    bad.write_text("body,label\nx,maybe\n")
    with pytest.raises(DataError, match="'maybe' is not in its label list"):
        load_examples(TaskConfig(name="mine", data_files={"train": str(bad)}, template="{body}", labels=["no", "yes"]), "train")
    with pytest.raises(DataError, match="no file for split 'dev'"):
        load_examples(TaskConfig(name="mine", path=str(tmp_path), template="{body}", labels=["no", "yes"]), "eval")


def test_truncation_is_counted_and_collation_pads():
    tok = tokenizer()
    exs = [Example("x" * 50, ["no", "yes"], 1), Example("short", ["no", "yes"], 0), Example("y" * 40, ["no", "yes"], 0)]
    with pytest.warns(TruncationWarning, match="2 of 3 inputs longer than 20 tokens were truncated"):
        ds = TextTaskDataset("t", exs, tok, max_input_length=20, max_target_length=8, sort_by_length=True)
    assert ds.truncated == {"inputs": 2, "answers": 0}
    assert [it["example_id"] for it in ds][0] == 1  # length-sorted for evaluation
    assert all(len(it["input_ids"]) <= 20 and it["input_ids"][-1] == tok.eos_token_id for it in ds)
    batch = TextCollator(tok.pad_token_id)([{**ds[i], "task_id": 0, "index": i} for i in range(3)])
    assert batch["input_ids"].shape == (3, 20) and batch["attention_mask"][0].sum() == 6
    assert batch["cand_ids"].shape == (3, 2, 4) and batch["class_mask"].all()
    with pytest.raises(DataError, match="tokenise identically"):
        TextTaskDataset("t", [Example("x", ["answer one", "answer two"], 0)], tok, 20, max_target_length=5)


def test_metrics_count_unparsable_as_wrong():
    m = classification_metrics([1, 0, 1, 0], [1, -1, -1, 0], 2, ["accuracy", "f1", "mcc"])
    assert m["accuracy"] == 0.5
    assert m["f1"] == pytest.approx(0.5)  # -1 on a negative gold counts as a false positive
    r = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, float("nan")], 0, 5, ["pearson", "spearman"])
    assert r["pearson"] < 0.5
    specs = [get_task("sst2"), get_task("stsb")]
    recs = [{"task_id": 0, "label": 1, "pred": 1, "gen_pred": -1}, {"task_id": 0, "label": 0, "pred": 0, "gen_pred": 0},
            {"task_id": 1, "label": 5, "value": 1.0, "pred_value": 1.2, "gen_pred_value": None},
            {"task_id": 1, "label": 10, "value": 2.0, "pred_value": 2.2, "gen_pred_value": 2.0},
            {"task_id": 1, "label": 15, "value": 3.0, "pred_value": 2.8, "gen_pred_value": 3.0}]
    rank = compute_metrics(specs, recs, "rank")
    assert rank["sst2/accuracy"] == 1.0 and rank["stsb/pearson"] > 0.9 and rank["sst2/n"] == 2
    gen = compute_metrics(specs, recs, "generate")
    assert gen["sst2/accuracy"] == 0.5 and gen["stsb/pearson"] < 0
    assert gen["score"] == pytest.approx((gen["sst2/score"] + gen["stsb/score"]) / 2)
    assert not math.isnan(classification_metrics([0, 0], [0, 0], 2, ["mcc"])["mcc"])


def test_config_errors(tmp_path):
    base = {"stage": "teachers", "output_dir": str(tmp_path), "tasks": [{"name": "sst2"}]}
    assert load_run_config(None, data=base).task_names == ["sst2"]
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        load_run_config(None, ["train.max_step=3"], data=base)
    with pytest.raises(ConfigError, match="unknown task 'sst3'"):
        load_run_config(None, data={**base, "tasks": [{"name": "sst3"}]})
    with pytest.raises(ConfigError, match="set teacher_path"):
        load_run_config(None, data={**base, "stage": "source"})
    with pytest.raises(ConfigError, match="duplicate"):
        load_run_config(None, data={**base, "tasks": [{"name": "sst2"}, {"name": "SST-2"}]})
    with pytest.raises(ConfigError, match="only for custom tasks"):
        load_run_config(None, data={**base, "tasks": [{"name": "sst2", "labels": ["a"]}]})
    with pytest.raises(ConfigError, match="metrics are only for custom tasks"):
        load_run_config(None, data={**base, "tasks": [{"name": "sst2", "metrics": ["f1"]}]})
    assert task_spec(TaskConfig(name="x", template="{t}", labels=["a", "b"])).verbalizers == ("a", "b")


def test_repository_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs" / "text"
    stages = {}
    for path in sorted(root.rglob("*.yaml")):
        if path.name == "base.yaml":
            continue
        cfg = load_run_config(path)
        stages[str(path.relative_to(root))] = cfg.stage
    assert stages["teachers.yaml"] == "teachers" and stages["source.yaml"] == "source" and stages["adapt.yaml"] == "target"
    assert load_run_config(root / "source.yaml").prompt.length == 100
    json.dumps(stages)
