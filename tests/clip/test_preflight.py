"""Fail fast: every CLIP command checks data, consumed runs, output and backbone before training."""

import json
import urllib.request
from pathlib import Path

import pytest
from clip_helpers import tiny_run

import huggingface_hub
import open_clip.pretrained
from mvlpt.clip.pipeline import config_for_stage, load_run_config, run_stage, sweep
from mvlpt.clip.pipeline.backbone_check import backbone_problems, pretrained_cached
from mvlpt.clip.pipeline.preflight import preflight
from mvlpt.core.config import to_dict
from mvlpt.core.errors import ConfigError, PreflightError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "clip"
METHODS = [{"name": "ZS", "stage": "zeroshot"}, {"name": "CoOp", "stage": "single", "method": "coop"},
           {"name": "MCoOp", "stage": "target", "method": "coop"}]


def _cfg(tmp_path, **sections):
    data = tiny_run(tmp_path, output_dir=str(tmp_path / "runs"), sources=[{"dataset": "digits", "max_eval": 8}],
                    target={"dataset": "digits", "max_eval": 8, "hflip": False}, train={"max_steps": 2},
                    sweep={"shots": [1], "seeds": [1], "methods": METHODS})
    return load_run_config(None, [], data={**data, **sections})


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt (hub or URL) raises."""
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a} {k}")

    for mod, name in [(huggingface_hub, "hf_hub_download"), (open_clip.pretrained, "hf_hub_download"),
                      (open_clip.pretrained, "download_pretrained_from_url"), (urllib.request, "urlopen")]:
        monkeypatch.setattr(mod, name, refuse)


def test_fewshot_with_a_missing_source_run_fails_before_any_cell(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sweep, "run_stage", lambda cfg, bb=None: calls.append(cfg.stage))
    cfg = _cfg(tmp_path)
    with pytest.raises(ConfigError, match=r"source run \S*runs/source_coop not found.*Run the source stage first"):
        sweep.run_fewshot(cfg, progress=False)
    assert calls == []  # the zero-shot and CoOp cells did not run first
    assert not (tmp_path / "runs").exists()  # no run directory, no cell, no runs.jsonl


def test_experiment_produces_its_own_teachers_and_sources(tmp_path):
    cfg = _cfg(tmp_path)
    preflight(cfg, "experiment", log=None)  # teachers → source → sweep: nothing needs to exist yet
    with pytest.raises(ConfigError, match=r"teacher run \S*teachers_coop not found"):
        run_stage(config_for_stage(cfg, "source"))


def test_an_existing_source_of_another_shape_is_refused_before_training(tmp_path):
    cfg = _cfg(tmp_path)
    src = tmp_path / "runs" / "source_coop"
    src.mkdir(parents=True)
    (src / "prompts.safetensors").write_bytes(b"")  # only its config is read
    saved = config_for_stage(cfg, "source", {"prompt": {"text": {"length": 3}}})
    (src / "config.json").write_text(json.dumps(to_dict(saved)))
    with pytest.raises(ConfigError, match=r"expected prompt\.text\.length=\d+; found prompt\.text\.length=3"):
        preflight(cfg, "fewshot", log=None)


def test_all_problems_in_one_error_bad_root_names_the_task(tmp_path):
    (tmp_path / "afile").write_text("x")
    target = {"dataset": {"name": "mine", "source": "imagefolder", "root": str(tmp_path / "nowhere")}}
    cfg = config_for_stage(_cfg(tmp_path, target=target, output_dir=str(tmp_path / "afile" / "runs")), "target")
    with pytest.raises(PreflightError) as err:
        run_stage(cfg)
    msg = str(err.value)
    assert msg.startswith("3 problems found before any training step (nothing was run):\n  - ")
    assert err.value.what == "mvlpt target"
    assert "task 'mine':" in msg and "nowhere" in msg
    assert "source_coop not found" in msg
    assert "afile is a file, not a directory" in msg
    assert len(err.value.problems) == 3


def test_a_sample_that_does_not_decode_is_reported(tmp_path):
    root = tmp_path / "imgs"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / "x.png").write_bytes(b"not a png")
    cfg = config_for_stage(_cfg(tmp_path, target={"dataset": {"name": "broken", "source": "imagefolder",
                                                              "root": str(root)}}), "single")
    with pytest.raises(ConfigError, match=r"task 'broken': the first sample of its '(train|test)' split does not decode"):
        run_stage(cfg)


def test_unwritable_output_is_refused(tmp_path, monkeypatch):
    cfg = config_for_stage(_cfg(tmp_path), "single")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(ConfigError, match=r"output_dir \S*runs is not writable \(.*Permission denied\); set output_dir"):
        run_stage(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_config_naming_no_backbone_does_not_download_the_default(tmp_path, no_network):
    path = tmp_path / "c.yaml"
    path.write_text(f"backbone: {{cache_dir: {tmp_path / 'cache'}}}\ntarget: digits\n")
    with pytest.raises(ConfigError, match=r"names no backbone, so the default ViT-B-16 \(pretrained=openai\) would be "
                                          r"downloaded.*set `backbone\.name: tiny-clip`"):
        load_run_config(path)
    # naming the hub model is the explicit opt-in: loading works (the download happens when the run starts)
    assert load_run_config(path, ["backbone.name=ViT-B-16"]).backbone.name == "ViT-B-16"


def test_an_uncached_hub_backbone_is_looked_up_offline(tmp_path, monkeypatch, no_network):
    cfg = load_run_config(None, [], data={"backbone": {"name": "ViT-B-16", "pretrained": "openai",
                                                       "cache_dir": str(tmp_path / "cache")}})
    notes: list = []
    assert backbone_problems(cfg.backbone, notes) == []
    assert "not in the local open_clip / Hugging Face cache: it will be downloaded" in notes[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (problem,) = backbone_problems(cfg.backbone, [])
    assert "downloads are off" in problem and "`backbone.name: tiny-clip`" in problem
    # a cached file (Hugging Face cache layout) is found without network
    repo = tmp_path / "cache" / "models--timm--vit_base_patch16_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc")
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "snapshots" / "abc" / "open_clip_model.safetensors").write_bytes(b"")
    assert pretrained_cached("ViT-B-16", "openai", str(tmp_path / "cache")) is True
    assert backbone_problems(cfg.backbone, []) == []


def test_unknown_backbone_names_and_tags(no_network):
    cfg = load_run_config(None, [], data={"backbone": {"name": "ViT-B-99"}})
    assert "is not an open_clip model" in backbone_problems(cfg.backbone, [])[0]
    cfg = load_run_config(None, [], data={"backbone": {"name": "ViT-B-16", "pretrained": "nope"}})
    assert "is not an open_clip tag of ViT-B-16" in backbone_problems(cfg.backbone, [])[0]


def test_the_quickstart_passes(tmp_path, no_network):
    cfg = load_run_config(CONFIGS / "quickstart.yaml", [f"output_dir={tmp_path}"])
    assert preflight(cfg, "experiment", log=None) == []
