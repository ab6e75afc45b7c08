"""benchmarks/miniature.py: --help, argument parsing and the report tables only (no training)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "miniature.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_miniature", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_runs():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--shots" in out.stdout and "--skip-text" in out.stdout


def test_defaults_are_the_full_protocol():
    args = _load().build_parser().parse_args([])
    assert args.shots == [1, 2, 4, 8, 16] and args.seeds == [1, 2, 3]
    assert args.targets == ["flowers5", "sign_digits"] and args.text_targets == ["rte", "mrpc", "cb", "boolq"]
    assert not args.skip_text and not args.upt
    mod = _load()
    assert mod.seeds_at(args) == {1: [1, 2, 3, 4, 5]} and mod.seeds_for(args, 4) == [1, 2, 3]
    assert args.target_max_eval == 0 and args.text_max_eval == 0  # full test splits / parts
    assert mod.seeds_at(mod.build_parser().parse_args(["--k1-seeds"])) == {}  # empty: --seeds at K=1 too
    assert mod.seeds_at(mod.build_parser().parse_args(["--shots", "4"])) == {}  # no K=1 swept


def test_per_target_configs_and_the_shared_fallback():
    mod = _load()
    args = mod.build_parser().parse_args(["--out-dir", "runs/m"])
    own = dict(o.split("=", 1) for o in mod.clip_overrides(args, "cpu", "flowers5", per_target=True))
    assert "sources" not in own and own["output_dir"] == "runs/m/clip/flowers5"  # its own sources, its own runs
    assert own["target.dataset"] == "flowers5" and own["target.max_eval"] == "0"
    assert "stages.teachers.train.max_steps" not in own  # step counts: the config's unless given
    assert "sweep.epochs_by_shots" not in own and "overrides" not in yaml.safe_load(own["sweep.methods"])[1]
    shared = dict(o.split("=", 1) for o in mod.clip_overrides(args, "cpu", "sign_digits", per_target=False))
    assert [s["dataset"] for s in yaml.safe_load(shared["sources"])] == ["cifar10", "mnist", "fashion_mnist", "easy_vqa"]
    assert shared["output_dir"] == "runs/m/clip"
    assert mod.clip_config("no_such_target") is None
    assert mod.clip_config("shared") == mod.CLIP_CONFIG  # configs/clip/mini_<target>.yaml


def test_reduced_run_arguments_and_clip_overrides():
    mod = _load()
    args = mod.build_parser().parse_args(["--shots", "1", "4", "16", "--seeds", "1", "--skip-text", "--upt",
                                          "--teacher-steps", "7", "--fewshot-steps", "5"])
    assert args.shots == [1, 4, 16] and args.seeds == [1] and args.skip_text
    ov = dict(o.split("=", 1) for o in mod.clip_overrides(args, "cpu", "sign_digits"))
    assert ov["stages.teachers.train.max_steps"] == "7" and "train.max_steps" not in ov
    assert yaml.safe_load(ov["sweep.shots"]) == [1, 4, 16] and yaml.safe_load(ov["sweep.seeds"]) == [1]
    assert yaml.safe_load(ov["sweep.seeds_at"]) == {1: [1, 2, 3, 4, 5]}
    assert ov["target.dataset"] == "sign_digits" and "target" not in ov  # a whole mapping would reset K
    methods = yaml.safe_load(ov["sweep.methods"])
    assert [m["name"] for m in methods] == ["ZS-CLIP", "CoOp", "VPT", "MCoOp", "MVPT", "MCoOp (MVLPT)",
                                            "UPT", "MUPT", "MUPT (MVLPT)"]
    # MVLPT's own source recipe beside the MPT-style one, each paired with its single-task method
    assert {m["name"]: m.get("source_mode") for m in methods}["MUPT (MVLPT)"] == "mvlpt"
    from mvlpt.clip.pipeline import load_run_config

    cfg = load_run_config(mod.CLIP_CONFIG, [f"sweep.methods={ov['sweep.methods']}"])
    assert cfg.sweep.pairs(cfg.method) == [("MCoOp", "CoOp"), ("MVPT", "VPT"), ("MCoOp (MVLPT)", "CoOp"),
                                           ("MUPT", "UPT"), ("MUPT (MVLPT)", "UPT")]
    assert all(m["overrides"]["train"]["max_steps"] == 5 for m in methods if m["stage"] != "zeroshot")
    assert ov["sweep.epochs_by_shots"] == "{}"  # fixed steps replace the config's epochs per K
    from mvlpt.clip.pipeline.run_config import method_epochs_by_shots

    assert method_epochs_by_shots(load_run_config(mod.CLIP_CONFIG), "coop")  # the config's own epochs per K ...
    fixed = load_run_config(mod.CLIP_CONFIG, mod.clip_overrides(args, "cpu", "sign_digits"))
    assert all(method_epochs_by_shots(fixed, m) == {} for m in ("coop", "vpt", "upt"))  # ... replaced for every method
    assert "&" not in ov["sweep.methods"]  # no YAML anchors in the logged command


def test_table_is_mean_std_per_method_and_shots():
    rows = [{"part": "text", "target": "rte", "method": m, "shots": k, "seed": s, "accuracy": a,
             "params": 8 * 32 + (8 + 32) if m == "MPT" else 8 * 32}
            for m, k, s, a in [("MPT", 1, 1, 50.0), ("MPT", 1, 2, 60.0), ("PT", 1, 1, 40.0), ("PT", 1, 2, 40.0)]]
    md = _load().tables(rows, [1])
    assert "| MPT | 55.0 ± 7.1 | 2 | 296 |" in md and "| PT | 40.0 ± 0.0 | 2 | 256 |" in md
    # the paired table: MPT − PT on the same K and seed (differences 10 and 20)
    assert "Paired differences: multitask − baseline" in md
    assert "| MPT | PT | 1 | 55.0 | 40.0 | +15.0 ▲ | [+10.0, +20.0] | 2/2 |" in md


def test_clip_tables_pair_multitask_with_single_task_lines():
    rows = [{"part": "clip", "target": "flowers5", "method": "ZS-CLIP", "stage": "zeroshot", "prompt": "coop",
             "shots": 0, "seed": 0, "accuracy": 30.0}]
    rows += [{"part": "clip", "target": "flowers5", "method": m, "stage": st, "prompt": "coop", "shots": 1, "seed": s,
              "accuracy": a + s} for m, st, a in [("CoOp", "single", 50.0), ("MCoOp", "target", 49.0)] for s in (1, 2, 3)]
    md = _load().tables(rows, [1], plots={("clip", "flowers5"): "m_flowers5.png"})
    assert "| ZS-CLIP | 30.0 | 1 |" in md and "| CoOp | 52.0 ± 1.0 | 3 |" in md
    assert "| MCoOp | CoOp | 1 | 51.0 | 52.0 | -1.0 ▼ | [-1.0, -1.0] | 0/3 |" in md
    assert "![clip flowers5](m_flowers5.png)" in md


def test_prompt_param_count_from_a_saved_run(tmp_path):
    import torch

    from mvlpt.core.checkpoint import save_checkpoint_dir

    mod = _load()
    for kind, train, want in [("decomposed", ["shared", "task_factors"], 8 * 32 + (8 + 32) * 2),
                              ("decomposed", ["task_factors"], (8 + 32) * 2), ("vanilla", ["task_prompts"], 8 * 32)]:
        run = tmp_path / f"{kind}_{len(train)}"
        meta = {"task_names": ["rte"], "d_model": 32,
                "resolved_prompt": {"kind": kind, "length": 8, "rank": 2, "train": train}}
        save_checkpoint_dir(run / "checkpoints" / "best", {"prompt.x": torch.zeros(3)}, {"meta": meta})
        assert mod.prompt_param_count(run) == want
    bare = tmp_path / "bare"
    save_checkpoint_dir(bare / "checkpoints" / "best", {"prompt.x": torch.zeros(5)}, {})
    assert mod.prompt_param_count(bare) == 5 and mod.prompt_param_count(tmp_path / "none") is None


def test_distillation_ablation_adds_a_target_method_from_the_undistilled_source():
    mod = _load()
    args = mod.build_parser().parse_args(["--distill-ablation", "--fewshot-steps", "5", "--out-dir", "runs/m"])
    methods = yaml.safe_load(dict(o.split("=", 1) for o in mod.clip_overrides(args, "cpu", "flowers5"))["sweep.methods"])
    ablation = [m for m in methods if m["name"] == "MCoOp (no distill)"]
    assert len(ablation) == 1 and ablation[0]["stage"] == "target"
    assert ablation[0]["overrides"]["source_path"].endswith(mod.NO_DISTILL_SOURCE)
    assert not mod.build_parser().parse_args([]).distill_ablation


def test_coop_only_with_random_init_reaches_every_stage_but_the_target():
    from mvlpt.clip.pipeline import config_for_stage, load_run_config

    mod = _load()
    args = mod.build_parser().parse_args(["--coop-only", "--coop-init", "random", "--upt", "--out-dir", "runs/m"])
    ov = mod.clip_overrides(args, "cpu", "flowers5")
    names = [m["name"] for m in yaml.safe_load(dict(o.split("=", 1) for o in ov)["sweep.methods"])]
    assert names == ["ZS-CLIP", "CoOp", "MCoOp", "MCoOp (MVLPT)"]  # no VPT / UPT lines, --upt or not
    cfg = load_run_config(mod.clip_config("flowers5"), ov)
    inits = {stage: config_for_stage(cfg, stage, {"prompt": {"method": "coop"}}).prompt.text.init
             for stage in ("teachers", "source", "single", "target")}
    assert inits == {"teachers": "random", "source": "random", "single": "random", "target": "source"}
    assert "text context from random init" in mod._clip_steps(cfg)
    default = load_run_config(mod.clip_config("flowers5"), mod.clip_overrides(mod.build_parser().parse_args([]), "cpu", "flowers5"))
    assert config_for_stage(default, "single", {"prompt": {"method": "coop"}}).prompt.text.init == "text"
    assert "text context from 'a photo of a'" in mod._clip_steps(default)


def test_text_shots_a_target_cannot_supply_are_found_before_training(shared_data):
    """BoolQ's 32-shot training set has 14 'no' rows, CB's 3 'maybe': found by the adapt stage's split
    before training, and the table note names the label, its count and what was done."""
    mod = _load()
    assert mod.text_short_labels("boolq", [8, 16], [f"data_root={shared_data}"]) == {16: {"0 ('no')": 14}}
    assert mod.text_short_labels("cb", [2, 4, 16], [f"data_root={shared_data}"]) == {
        4: {"2 ('maybe')": 3}, 16: {"1 ('no')": 10, "2 ('maybe')": 3}}
    note = mod.short_note({4: {"2 ('maybe')": 3}, 8: {"2 ('maybe')": 3}}, "all")
    assert note.startswith("K = 4, 8: label 2 ('maybe') has 3 training examples, all of them taken")
    assert mod.short_note({16: {"0 ('no')": 14}}, "skip") == "K = 16: label 0 ('no') has 14 training examples, not run"


def test_sources_lines_and_val_split_narrow_a_run_before_any_training():
    """--sources keeps the config's own entries (shots, caps) of the named sources; --lines the named
    sweep lines; --eval-split val reports the few-shot stages on --val-k unsampled images per class
    without selecting on them, and leaves the sources' splits alone. Bad names stop the run."""
    from mvlpt.clip.pipeline import config_for_stage, load_run_config

    mod = _load()
    args = mod.build_parser().parse_args(["--coop-only", "--sources", "easy_vqa_color", "caltech101",
                                          "--lines", "MCoOp (MVLPT)", "--eval-split", "val", "--val-k", "50"])
    ov = mod.clip_overrides(args, "cpu", "flowers5")
    d = dict(o.split("=", 1) for o in ov)
    own = {mod.source_name(e): e for e in yaml.safe_load((mod.CLIP_CONFIGS / "mini_flowers5.yaml").read_text())["sources"]}
    assert yaml.safe_load(d["sources"]) == [own["easy_vqa_color"], own["caltech101"]]
    assert [m["name"] for m in yaml.safe_load(d["sweep.methods"])] == ["MCoOp (MVLPT)"]
    cfg = load_run_config(mod.clip_config("flowers5"), ov)
    assert [t.name for t in cfg.sources] == ["easy_vqa_color", "caltech101"]
    for stage in ("single", "target"):
        s = config_for_stage(cfg, stage, {"prompt": {"method": "coop"}})
        assert (s.eval_split, s.data.val_source, s.data.val_k, s.train.eval_every) == ("val", "auto", 50, 0)
    src = config_for_stage(cfg, "source", {"prompt": {"method": "coop"}})
    assert src.eval_split == "test" and src.data.val_source == "holdout" and src.data.val_k is None
    plain = dict(o.split("=", 1) for o in mod.clip_overrides(mod.build_parser().parse_args([]), "cpu", "flowers5"))
    assert "sources" not in plain and not any(k.endswith("eval_split") for k in plain)
    # a source of another miniature experiment, with that experiment's settings
    other = {mod.source_name(e): e for e in yaml.safe_load((mod.CLIP_CONFIGS / "mini_sign_digits.yaml").read_text())["sources"]}
    more = mod.clip_overrides(mod.build_parser().parse_args(["--sources", "cifar10", "digits"]), "cpu", "flowers5")
    assert yaml.safe_load(dict(o.split("=", 1) for o in more)["sources"]) == [own["cifar10"], other["digits"]]
    for bad, msg in ((["--sources", "no_such_set"], "--sources"), (["--lines", "CoOpp"], "--lines"),
                     (["--coop-only", "--eval-split", "val"], "zero-shot")):
        with pytest.raises(SystemExit, match=msg):
            mod.clip_overrides(mod.build_parser().parse_args(bad), "cpu", "flowers5")


def test_clip_weights_reach_every_stage_and_load_the_same_model_as_the_shipped_name(tmp_path):
    import torch

    from mvlpt.clip.backbone import create_backbone, weights_dir
    from mvlpt.clip.pipeline import config_for_stage, load_run_config

    mod = _load()
    shipped = weights_dir()
    if not (shipped / "open_clip_model.safetensors").is_file():
        pytest.skip("the shipped tiny-clip weights are not in this checkout")
    args = mod.build_parser().parse_args(["--clip-weights", str(shipped)])
    cfg = load_run_config(mod.clip_config("flowers5"), mod.clip_overrides(args, "cpu", "flowers5"))
    for stage in ("teachers", "source", "single", "target"):
        bb = config_for_stage(cfg, stage, {"prompt": {"method": "coop"}}).backbone
        assert (bb.name, bb.checkpoint) == ("tiny-clip", str(shipped))
    via_dir = create_backbone(cfg.backbone).model.state_dict()
    default = create_backbone("tiny-clip").model.state_dict()
    assert via_dir.keys() == default.keys() and all(torch.equal(via_dir[k], default[k]) for k in default)
    with pytest.raises(SystemExit, match="no exported tiny CLIP there"):
        mod.clip_overrides(mod.build_parser().parse_args(["--clip-weights", str(tmp_path)]), "cpu", "flowers5")


def test_teacher_and_source_steps_reach_the_methods_own_stage_schedules():
    from mvlpt.clip.pipeline import config_for_stage, load_run_config

    mod = _load()
    plain = load_run_config(mod.clip_config("flowers5"), mod.clip_overrides(mod.build_parser().parse_args([]), "cpu", "flowers5"))
    args = mod.build_parser().parse_args(["--teacher-steps", "7", "--source-steps", "9", "--upt"])
    cfg = load_run_config(mod.clip_config("flowers5"), mod.clip_overrides(args, "cpu", "flowers5"))
    for method in ("coop", "vpt", "upt"):
        for stage, n in (("teachers", 7), ("source", 9)):
            assert config_for_stage(cfg, stage, {"prompt": {"method": method}}).train.max_steps == n, (method, stage)
    # coop's own schedule (methods.coop.stages) set 300 steps, which a top-level stage key alone did not change
    assert config_for_stage(plain, "source", {"prompt": {"method": "coop"}}).train.max_steps == 300


def test_text_source_stages_take_the_source_tasks_and_steps():
    from text_mpt.config import load_run_config

    mod = _load()
    out, common = Path("runs/m/text"), ["train.max_steps=60"]
    args = mod.build_parser().parse_args(["--text-sources", "sst2", "mnli", "qqp", "--text-source-steps", "300",
                                          "--text-source-train", "100", "--distill-ablation"])
    stages = mod.text_source_stages(args, out, common)
    assert [c.name for c, _ in stages] == ["teachers.yaml", "source.yaml", "source.yaml"]
    teachers, source, nodistill = (load_run_config(c, ov) for c, ov in stages)
    for cfg in (teachers, source, nodistill):
        assert [t.name for t in cfg.tasks] == ["sst2", "mnli", "qqp"] and cfg.train.max_steps == 300
        assert all(t.max_train_examples == 100 for t in cfg.tasks)
    assert all(sum(o.startswith("train.max_steps=") for o in ov) == 1 for _, ov in stages)  # the logged command
    assert source.teacher_path == str(out / "teachers") and source.train.distill.kl_weight > 0
    assert nodistill.train.distill.kl_weight == 0 and nodistill.train.distill.mse_weight == 0
    # defaults: SST-2 and QNLI, the target runs' step count
    cfg = load_run_config(*mod.text_source_stages(mod.build_parser().parse_args([]), out, common)[0])
    assert [t.name for t in cfg.tasks] == ["sst2", "qnli"] and cfg.train.max_steps == 60


def test_text_backbone_reaches_every_text_run_and_a_bad_folder_fails_first(tmp_path):
    from text_mpt.config import load_run_config
    from text_mpt.pretrain import PACKAGE_DIR

    mod = _load()
    args = mod.build_parser().parse_args(["--text-backbone", str(PACKAGE_DIR), "--text-steps", "7"])
    common = mod.text_common_overrides(args, "cpu", "/data")
    for config in ("teachers.yaml", "source.yaml", "adapt.yaml"):
        cfg = load_run_config(mod.TEXT_CONFIGS / config, common)
        assert cfg.backbone.name == str(PACKAGE_DIR.resolve()) and cfg.backbone.tokenizer is None
        assert cfg.train.max_steps == 7 and cfg.train.device == "cpu"
    with pytest.raises(SystemExit, match="no config.json"):
        mod.text_common_overrides(mod.build_parser().parse_args(["--text-backbone", str(tmp_path)]), "cpu", "/data")
    # without the flag: the configs' own backbone
    default = mod.text_common_overrides(mod.build_parser().parse_args([]), "cpu", "/data")
    assert not any(o.startswith("backbone.name=") for o in default)


def test_text_eval_at_start_reaches_the_target_runs_only_when_asked():
    from text_mpt.config import load_run_config

    mod = _load()
    for argv, expected in (([], False), (["--text-eval-at-start"], True)):
        args = mod.build_parser().parse_args(argv)
        ov = mod.text_target_overrides(args, ["train.max_steps=60"], Path("runs/m/text/rte_pt_k4_s1"), "rte", 4, 1,
                                       ["prompt.kind=vanilla", "prompt.init=random", "prompt.source_path=null"], False)
        cfg = load_run_config(mod.TEXT_CONFIGS / "adapt.yaml", ov)
        assert cfg.train.eval_at_start is expected and cfg.few_shot_k == 4 and cfg.train.seed == 1
        assert [t.name for t in cfg.tasks] == ["rte"] and cfg.prompt.kind == "vanilla"
