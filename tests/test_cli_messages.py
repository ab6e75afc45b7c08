"""What a user sees from both CLIs: one-line errors (no tracebacks), exit codes, --version, "did you
mean" for commands, --fresh, Ctrl-C, adapt's seed = the sweep cell's, predict on bad files / scores,
text predict on bad rows, the PEFT export hint, and the README's "Your own images" snippet."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from mvlpt.clip import cli as clip_cli
from text_mpt import cli as text_cli

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "configs/clip/quickstart.yaml")


def _run(main, argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own exits (--version, usage errors)
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _clip(path):
    return ["teachers", "--config", str(path)]


def _text(path):
    return ["teachers", str(path)]


# -- config files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [_clip, _text])
@pytest.mark.parametrize("text, expected", [("", "the config file is empty"), ("# nothing\n", "the config file is empty"),
                                            ("- a\n- b\n", "the top level of a config must be a mapping")])
def test_empty_or_non_mapping_config_is_an_error_naming_the_file(tmp_path, capsys, argv, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    main = clip_cli.main if argv is _clip else text_cli.main
    rc, _, err = _run(main, argv(path), capsys)
    assert rc == 2 and f"{path}: {expected}" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [_clip, _text])
def test_yaml_syntax_error_is_one_message_with_file_line_column(tmp_path, capsys, argv):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_steps: 3\n  optim: {lr: 0.1\nprompt: {}\n")
    main = clip_cli.main if argv is _clip else text_cli.main
    rc, _, err = _run(main, argv(path), capsys)
    assert rc == 2 and "Traceback" not in err and "ScannerError" not in err and "ParserError" not in err
    assert f"{path}:4:7: invalid YAML" in err
    assert "    prompt: {}\n          ^" in err  # the offending line and a caret under the column
    assert "starts at line 3: 'optim: {lr: 0.1'" in err


def test_override_that_is_not_yaml_is_a_message(capsys):
    rc, _, err = _run(clip_cli.main, ["teachers", "--config", QUICK, "train.max_steps=[1"], capsys)
    assert rc == 2 and "override 'train.max_steps=[1': the value is not valid YAML" in err


# -- commands, version, flags -----------------------------------------------------------------------


def test_unknown_command_names_the_nearest(capsys):
    rc, _, err = _run(clip_cli.main, ["adpt", "--config", QUICK], capsys)
    assert rc == 2 and err.strip() == "mvlpt: error: unknown command 'adpt'; did you mean 'adapt'?"
    rc, _, err = _run(text_cli.main, ["exprot-peft", "a", "b"], capsys)
    assert rc == 2 and err.strip() == "text-mpt: error: unknown command 'exprot-peft'; did you mean 'export-peft'?"
    rc, _, err = _run(clip_cli.main, ["zzz"], capsys)
    assert rc == 2 and "unknown command 'zzz'; the commands are: teachers, source, adapt" in err


def test_version(capsys):
    version = importlib.metadata.version("mvlpt")
    assert _run(clip_cli.main, ["--version"], capsys)[:2] == (0, f"mvlpt {version}\n")
    assert _run(text_cli.main, ["--version"], capsys)[:2] == (0, f"text-mpt {version}\n")


def test_fresh_flag_is_the_fresh_override():
    parser = clip_cli.build_parser()
    for cmd in clip_cli.TRAINING_COMMANDS:
        argv = [cmd, "--fresh"] + (["--config", QUICK] if cmd != "quickstart" else []) + ["train.max_steps=1"]
        assert clip_cli.command_overrides(parser.parse_args(argv)) == ["train.max_steps=1", "fresh=true"]
    assert "fresh=true" not in clip_cli.command_overrides(parser.parse_args(["adapt", "--config", QUICK]))
    for cmd in text_cli.STAGES:
        args = text_cli._parser().parse_args([cmd, "c.yaml", "--fresh", "--strict"])
        assert text_cli.command_overrides(args) == ["train.health.strict=true", "fresh=true"]


def test_ctrl_c_exits_quietly_with_130(monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(clip_cli, "_dispatch", interrupted)
    rc, _, err = _run(clip_cli.main, ["teachers", "--config", QUICK], capsys)
    assert rc == 130 and "Traceback" not in err
    assert err.strip() == "mvlpt teachers: interrupted; run the same command again to resume from the latest checkpoint"
    monkeypatch.setattr(text_cli, "run", interrupted)
    rc, _, err = _run(text_cli.main, ["teachers", "c.yaml"], capsys)
    assert rc == 130 and err.strip().startswith("text-mpt: interrupted;")


# -- adapt trains the sweep cell it names -----------------------------------------------------------


@pytest.mark.parametrize("scratch, line", [(False, ("MCoOp", "target")), (True, ("CoOp", "single"))])
@pytest.mark.parametrize("extra, seed", [([], 1), (["target.seed=2"], 2)])
def test_adapt_trains_with_the_seed_of_the_sweep_cell_it_names(tmp_path, scratch, line, extra, seed):
    from mvlpt.clip.pipeline.run_config import MethodSpec, load_run_config
    from mvlpt.clip.pipeline.plan import Cell, cell_config

    cfg = load_run_config(QUICK, ["target.shots=4", f"output_dir={tmp_path}", *extra])
    adapt = clip_cli.stage_config(cfg, "adapt", scratch=scratch)
    cell = cell_config(cfg, Cell(MethodSpec(line[0], line[1], "coop"), 4, seed), tmp_path / "sweep")
    assert adapt.resolved_run_dir().name.endswith(f"_k4_s{seed}")
    assert (adapt.train.seed, adapt.target.seed, adapt.target.shots) == (seed, seed, 4)
    assert (adapt.train.seed, adapt.target.seed) == (cell.train.seed, cell.target.seed)
    # an explicit train.seed on the command line wins in both
    cfg = load_run_config(QUICK, ["target.shots=4", "train.seed=7", *extra])
    assert clip_cli.stage_config(cfg, "adapt", scratch=scratch).train.seed == 7


# -- predict ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zeroshot_run(tmp_path_factory):
    """A zero-shot run (one task: digits) on a 16 px tiny random CLIP."""
    from mvlpt.clip import tiny_clip_config

    root = tmp_path_factory.mktemp("zs")
    (root / "tiny.json").write_text(json.dumps(tiny_clip_config(image_size=16, patch_size=8, width=32, text_width=32,
                                                                embed_dim=32, context_length=24)))
    cfg = {"backbone": {"name": "tiny-random", "pretrained": None, "model_config": str(root / "tiny.json")},
           "train": {"device": "cpu", "precision": "fp32", "progress": False, "tensorboard": False},
           "data": {"train_augment": False}, "output_dir": str(root / "runs"),
           "target": {"dataset": "digits", "max_eval": 20, "hflip": False}}
    (root / "zs.yaml").write_text(yaml.safe_dump(cfg))
    threads = torch.get_num_threads()
    assert clip_cli.main(["zeroshot", "--config", str(root / "zs.yaml")]) == 0
    torch.set_num_threads(threads)
    return root / "runs" / "zeroshot_digits"


def _images(d: Path) -> dict[str, Path]:
    d.mkdir(exist_ok=True)
    files = {k: d / f"{k}.png" for k in ("good1", "good2", "truncated", "bomb", "bomb_warn")}
    for k, v in files.items():
        size = {"bomb": (80, 80), "bomb_warn": (60, 60)}.get(k, (12, 12))
        Image.new("RGB", size, (10 * len(k), 120, 40)).save(v)
    noise = Image.frombytes("RGB", (48, 48), bytes((i * 7919) % 251 for i in range(48 * 48 * 3)))
    noise.save(files["truncated"])
    data = files["truncated"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) * 6 // 10])  # cut inside the pixel data
    files["text"] = d / "notes.png"
    files["text"].write_text("not an image")
    return files


def test_predict_skips_bad_files_and_prints_probabilities(zeroshot_run, tmp_path, monkeypatch, capsys):
    files = _images(tmp_path / "img")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2500)  # 60x60 = 3600 px: PIL warns; 80x80 = 6400 px: PIL raises
    order = ["good1", "truncated", "text", "bomb", "bomb_warn", "good2"]
    # a one-task run needs no --task
    rc, out, err = _run(clip_cli.main, ["predict", "--run", str(zeroshot_run), "--device", "cpu", "--topk", "3",
                                        *[str(files[k]) for k in order]], capsys)
    assert rc == 1 and "Traceback" not in err
    lines = out.strip().splitlines()
    assert [l.split("\t")[0] for l in lines] == [str(files["good1"]), str(files["good2"])]
    for line in lines:
        img, task, pred, prob, top = line.split("\t")
        assert task == "digits" and 0 < float(prob) <= 1 and top.startswith(f"{pred} {prob}") and top.count(",") == 2
    assert f"skipped {files['truncated']}: truncated or corrupt image file" in err
    assert f"skipped {files['text']}: not an image file (PIL cannot identify its format)" in err
    assert f"skipped {files['bomb']}: refused as a possible decompression bomb" in err
    assert f"skipped {files['bomb_warn']}: refused as a possible decompression bomb" in err
    assert "4 of 6 image(s) skipped" in err


def test_predict_probabilities_agree_with_the_model(zeroshot_run, tmp_path):
    from mvlpt.clip.pipeline.predict import Predictor
    from mvlpt.core.errors import DataError

    files = _images(tmp_path / "img")
    p = Predictor.from_run(zeroshot_run, device="cpu")
    rows = p.predict([files["good1"], files["good2"]], topk=10)
    assert all(abs(sum(t["prob"] for t in r["top"]) - 1) < 1e-5 for r in rows)  # digits: 10 classes
    pix = torch.stack([p._pixels(files["good1"]), p._pixels(files["good2"])])
    recs = p.model.predict({"images": pix, "labels": torch.zeros(2, dtype=torch.long), "task_ids": torch.zeros(2, dtype=torch.long),
                            "indices": torch.arange(2), "questions": [None, None]})
    assert [r["class_index"] for r in rows] == [r["pred"] for r in recs]
    with pytest.raises(DataError, match=r"image 1 \(.*notes.png\): not an image file"):
        p.predict([files["good1"], files["text"]])


# -- text-mpt predict rows, PEFT export -------------------------------------------------------------


def test_text_predict_bad_rows_are_named(tmp_path, capsys):
    rc, _, err = _run(text_cli.main, ["predict", str(tmp_path), "--row", '{"task": "sst2"}', "--row", "not json"], capsys)
    assert rc == 2 and "Traceback" not in err
    assert "text-mpt: error: --row 2: not valid JSON (Expecting value at column 1): 'not json'" in err
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"task": "sst2", "sentence": "ok"}\n\n[1, 2]\n')
    rc, _, err = _run(text_cli.main, ["predict", str(tmp_path), "--input", str(rows)], capsys)
    assert rc == 2 and f"{rows}:3: a row must be a JSON object" in err


def test_export_peft_prints_how_to_load_the_base_model_and_the_hint_works(tmp_path, capsys):
    peft = pytest.importorskip("peft")
    from mvlpt.core.checkpoint import save_checkpoint_dir
    from mvlpt.core.prompts import DecomposedPrompt
    from text_mpt.backbone import build_tiny_t5
    from text_mpt.config import TinyT5Config, load_run_config
    from text_mpt.pipeline import run_config_dict

    tasks = [{"name": "polarity", "template": "polarity: {text}", "labels": ["negative", "positive"]}]
    cfg = load_run_config(None, data={"stage": "source", "output_dir": str(tmp_path / "src"), "tasks": tasks,
                                      "backbone": {"name": "tiny"}, "prompt": {"length": 5, "rank": 2},
                                      "train": {"distill": {"kl_weight": 0, "mse_weight": 0}}})
    prompt = DecomposedPrompt(1, (5, 32), rank=2, init_std=0.5)
    bb = build_tiny_t5(TinyT5Config(), vocab_size=384)
    save_checkpoint_dir(tmp_path / "src" / "checkpoints" / "best", {f"prompt.{k}": v for k, v in prompt.state_dict().items()},
                        run_config_dict(cfg, 32, backbone_config=bb.config))
    adapter = tmp_path / "adapter"
    rc, out, _ = _run(text_cli.main, ["export-peft", str(tmp_path / "src"), str(adapter)], capsys)
    assert rc == 0 and "note: base_model_name_or_path is null" in out and "labels=" in out
    # the recipe of the hint
    from mvlpt.core.config import from_dict
    from text_mpt.backbone import load_backbone
    from text_mpt.config import BackboneConfig

    t5, tok = load_backbone(from_dict(BackboneConfig, json.load(open(adapter / "mvlpt_run.json"))["backbone"]))
    model = peft.PeftModel.from_pretrained(t5, str(adapter)).eval()
    enc = tok(["polarity: good"], return_tensors="pt")
    labels = tok(["positive"], return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(**enc, labels=labels, task_ids=torch.tensor([0])).logits
        assert logits.shape[:2] == labels.shape
        with pytest.raises(Exception):  # PEFT's MPT forward drops decoder_input_ids: labels= it is
            model(**enc, decoder_input_ids=labels, task_ids=torch.tensor([0]))


# -- README: "Your own images" ----------------------------------------------------------------------


def test_readme_own_images_snippet(tmp_path, monkeypatch, capsys):
    """The README's commands on a generated two-class folder (tiny-clip, a few steps)."""
    monkeypatch.chdir(tmp_path)
    for c, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
        (tmp_path / "data/my_pets" / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (24, 24), tuple(min(255, v + 6 * i) for v in colour)).save(tmp_path / f"data/my_pets/{c}/{i}.jpg")
    shutil.copytree(ROOT / "configs/clip", tmp_path / "configs/clip")
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("```yaml\n# my_pets.yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_pets.yaml").write_text(snippet)
    threads = torch.get_num_threads()
    try:
        assert clip_cli.main(["zeroshot", "--config", "my_pets.yaml"]) == 0
        assert clip_cli.main(["adapt", "--config", "my_pets.yaml", "--scratch", "train.max_steps=2"]) == 0
        run = tmp_path / "runs/my_pets/single_coop_my_pets_k4_s1"
        assert json.loads((run / "config.json").read_text())["train"]["seed"] == 1
        capsys.readouterr()
        assert clip_cli.main(["predict", "--run", str(run), "--topk", "2", "data/my_pets/dog/0.jpg"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out.split("\t")[1] == "my_pets"
