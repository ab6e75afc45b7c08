"""The prompt methods as a registry: every registered method × every stage builds, has the declared
shapes, trains the stage's groups and round-trips through a checkpoint; a target reads its source run
once; a method registered in one file is usable by config; unknown names are refused naming the methods.

Parametrised over :data:`mvlpt.clip.prompts.PROMPT_METHODS` (as timm's tests are driven by its registry):
a newly registered method is tested here without editing this file."""

from __future__ import annotations

import importlib

import pytest
import torch

from clip_helpers import make_batch

from mvlpt.clip import CLIPPromptConfig, CLIPTaskModel, TaskInfo
from mvlpt.clip.pipeline.compat import check_compatible
from mvlpt.clip.pipeline.run_config import config_for_stage, load_run_config
from mvlpt.clip.prompts import (PROMPT_METHODS, BackboneDims, PromptSet, prompt_method, prompt_shape_keys,
                                text_prompt_shape, visual_prompt_shape)
from mvlpt.clip.task_model import STAGES
from mvlpt.core import stages as core_stages
from mvlpt.core.checkpoint import load_tensors, save_tensors
from mvlpt.core.config import to_dict
from mvlpt.core.errors import CheckpointError, ConfigError
from mvlpt.core.prompts import PromptModule
from mvlpt.core.stages import PromptConfig, resolve_prompt_config

METHODS = list(PROMPT_METHODS)
SOURCE_TASKS = [TaskInfo("pets", "classification", ["cat", "dog", "hamster"]),
                TaskInfo("cars", "classification", ["sedan", "truck"])]
TARGET_TASKS = [TaskInfo("flowers", "classification", ["rose", "tulip"])]


def pc(method: str, source_path: str | None = None, **kw) -> CLIPPromptConfig:
    return CLIPPromptConfig(method=method, text=PromptConfig(length=2, source_path=source_path, **kw),
                            visual=PromptConfig(length=2, source_path=source_path, **kw))


def tasks_of(stage: str) -> list[TaskInfo]:
    return SOURCE_TASKS if stage in ("teachers", "source") else TARGET_TASKS


@pytest.fixture(scope="module")
def source_runs(backbone, tmp_path_factory):
    """A saved source-stage run (``prompts.safetensors``) per registered method."""
    model, tok = backbone[0], backbone[1]
    out = {}
    for method in METHODS:
        d = tmp_path_factory.mktemp(f"source_{method}")
        torch.manual_seed(1)
        save_tensors(d / "prompts.safetensors", CLIPTaskModel(model, tok, SOURCE_TASKS, pc(method), "source")
                     .trainable_state_dict())
        out[method] = str(d)
    return out


def build(backbone, source_runs, method: str, stage: str, **kw) -> CLIPTaskModel:
    model, tok = backbone[0], backbone[1]
    src = source_runs[method] if stage == "target" else None
    return CLIPTaskModel(model, tok, tasks_of(stage), pc(method, src, **kw), stage)


def dims_of(m: CLIPTaskModel) -> BackboneDims:
    return BackboneDims(m.text_tower.width, m.vision_tower.width, m.vision_tower.layers, max(m.layout.sizes))


def test_registry_declarations():
    assert METHODS[:3] == ["coop", "vpt", "upt"]
    cfg = to_dict(CLIPPromptConfig())
    for name, cls in PROMPT_METHODS.items():
        assert issubclass(cls, PromptSet) and cls.name == name and prompt_method(name) is cls
        assert cls.uses_text or cls.uses_visual
        for key in cls.shape_keys:  # every declared key is a prompt config key
            node = cfg
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: shape key {key!r} is not a prompt key"
                node = node[part]
        assert set(cls.shape_keys) <= set(prompt_shape_keys())
    assert prompt_shape_keys()[0] == "method"
    assert CLIPPromptConfig(method="coop").uses_text and not CLIPPromptConfig(method="coop").uses_visual
    assert CLIPPromptConfig(method="vpt").uses_visual and not CLIPPromptConfig(method="vpt").uses_text


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"prompt\.method .*coop, vpt, upt.*found 'vtp'; did you mean 'vpt'\?"):
        CLIPPromptConfig(method="vtp").validate()
    with pytest.raises(ConfigError, match=r"registered prompt methods .*found 'clip'"):
        load_run_config(None, [], data={"prompt": {"method": "clip"}})
    with pytest.raises(ConfigError, match=r"prompt\.method .*did you mean 'upt'"):
        load_run_config(None, ["prompt.method=uptt"], data={})
    with pytest.raises(ConfigError, match=r"sweep\.methods: 'X': method .*did you mean 'coop'"):
        load_run_config(None, [], data={"sweep": {"methods": [{"name": "X", "method": "cop"}]}})


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("method", METHODS)
def test_builds_with_the_declared_shapes(backbone, source_runs, method, stage):
    m = build(backbone, source_runs, method, stage)
    cls = PROMPT_METHODS[method]
    assert type(m.prompt_set) is cls
    assert m.cfg.uses_text == cls.uses_text and m.cfg.uses_visual == cls.uses_visual
    n = len(tasks_of(stage))
    prompts = m.prompt_set(torch.arange(n))
    dims = dims_of(m)
    if cls.uses_text:
        assert tuple(prompts.text.shape) == (n, *text_prompt_shape(m.cfg, dims))
    else:
        assert prompts.text is None
    if cls.uses_visual:
        assert tuple(prompts.visual.shape) == (n, *visual_prompt_shape(m.cfg, dims))
    else:
        assert prompts.visual is None
    out = m.step(make_batch(list(range(n)) * 2, [0, 1] * n))
    assert out.loss.isfinite() and out.logits.shape[0] == 2 * n


def _trainable_groups(m: CLIPTaskModel) -> dict[str, set[str]]:
    out = {}
    for name, mod in m.prompt_modules().items():
        if isinstance(mod, PromptModule):
            out[name] = {g for g in mod.groups if all(p.requires_grad for p in mod.group_parameters(g))}
            assert not any(p.requires_grad for g in set(mod.groups) - out[name] for p in mod.group_parameters(g))
        else:
            flags = {p.requires_grad for p in mod.parameters()}
            assert len(flags) == 1, f"{name}: partly trainable"
            out[name] = {"all"} if flags.pop() else set()
    return out


#: every stage with its default groups, and the decomposed stages' factors-only variant
STAGE_TRAIN = [(s, "auto") for s in STAGES] + [(s, ["task_factors"]) for s in STAGES if s in ("source", "target")]


@pytest.mark.parametrize(("stage", "train"), STAGE_TRAIN,
                         ids=[f"{s}-{'default' if t == 'auto' else 'factors_only'}" for s, t in STAGE_TRAIN])
@pytest.mark.parametrize("method", METHODS)
def test_which_groups_train_per_stage(backbone, source_runs, method, stage, train):
    m = build(backbone, source_runs, method, stage, train=train)
    groups = _trainable_groups(m)
    assert groups, "a method trains something"
    resolved = resolve_prompt_config(m.cfg.text if m.cfg.uses_text else m.cfg.visual, stage)
    expected = set(resolved.train)
    assert expected == ({"task_prompts"} if stage in ("teachers", "single") else
                        {"shared", "task_factors"} if train == "auto" else {"task_factors"})
    for name, g in groups.items():
        if isinstance(m.prompt_modules()[name], PromptModule):
            assert g == expected, name
        else:  # shared modules (UPT's mapping) train with the shared prompt
            assert g == ({"all"} if resolved.kind == "vanilla" or "shared" in expected else set()), name
    # the optimizer's groups are the trainable ones, and only those
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert {id(p) for ps in m.parameter_groups().values() for p in ps} == trainable


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip(backbone, source_runs, method, stage, tmp_path):
    m = build(backbone, source_runs, method, stage)
    with torch.no_grad():  # move every tensor off its initial value
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    save_tensors(tmp_path / "prompts.safetensors", m.trainable_state_dict())
    torch.manual_seed(123)
    fresh = build(backbone, source_runs, method, stage)
    fresh.load_trainable_state_dict(load_tensors(tmp_path / "prompts.safetensors"))
    a, b = m.trainable_state_dict(), fresh.trainable_state_dict()
    assert set(a) == set(b) and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ids = torch.arange(len(tasks_of(stage)))
    pa, pb = m.prompt_set(ids), fresh.prompt_set(ids)
    for x, y in ((pa.text, pb.text), (pa.visual, pb.visual)):
        assert (x is None) == (y is None) and (x is None or torch.equal(x, y))


@pytest.mark.parametrize("method", METHODS)
def test_target_reads_its_source_run_once(backbone, source_runs, method, monkeypatch):
    reads = []
    real = core_stages.load_run_prompts
    monkeypatch.setattr(core_stages, "load_run_prompts", lambda path: (reads.append(str(path)), real(path))[1])
    m = build(backbone, source_runs, method, "target")
    assert reads == [source_runs[method]]  # every prompt module (and UPT's mapping) from one read
    src, _ = real(source_runs[method])
    for name, mod in m.prompt_modules().items():
        if isinstance(mod, PromptModule):
            torch.testing.assert_close(mod.shared, src[f"{name}.shared"])
        else:
            for k, v in mod.state_dict().items():
                torch.testing.assert_close(v, src[f"{name}.{k}"])


def test_upt_refuses_a_source_without_its_mapping(backbone, source_runs, tmp_path):
    model, tok = backbone[0], backbone[1]
    coop_vpt = {**load_tensors(source_runs["coop"] + "/prompts.safetensors"),  # text + visual tensors, no mapping
                **load_tensors(source_runs["vpt"] + "/prompts.safetensors")}
    save_tensors(tmp_path / "prompts.safetensors", coop_vpt)
    with pytest.raises(CheckpointError, match="has no 'upt_mapping.' tensors"):
        CLIPTaskModel(model, tok, TARGET_TASKS, pc("upt", str(tmp_path)), "target")


@pytest.fixture
def toy_method():
    """Import the one-file toy method (registering it); unregister afterwards."""
    mod = importlib.import_module("toy_prompt_method")
    cls = mod.ToyShiftPrompts
    PROMPT_METHODS[cls.name] = cls  # (re-)register after an earlier test's clean-up
    yield cls
    PROMPT_METHODS.pop(cls.name, None)


def test_a_method_registered_in_one_file_is_usable_by_config(backbone, toy_method, tmp_path):
    model, tok = backbone[0], backbone[1]
    def data():
        return {"prompt": {"method": "toy_shift", "text": {"length": 2}}, "target": "digits",
                "sweep": {"methods": [{"name": "Toy", "method": "toy_shift"}]}}

    cfg = load_run_config(None, [], data=data())
    assert cfg.method == "toy_shift" and cfg.prompt.uses_text and not cfg.prompt.uses_visual
    with pytest.raises(ConfigError, match="toy_shift needs prompt.text.length"):  # the method's own check
        load_run_config(None, ["prompt.text.length=0"], data=data())
    # every stage builds and trains it (the source stage first: its run starts the target)
    built = {}
    for stage in sorted(STAGES, key=lambda s: s == "target"):
        prompt = pc("toy_shift", str(tmp_path)) if stage == "target" else config_for_stage(cfg, stage).prompt
        m = built[stage] = CLIPTaskModel(model, tok, tasks_of(stage), prompt, stage)
        assert type(m.prompt_set) is toy_method
        n = len(tasks_of(stage))
        m.step(make_batch(list(range(n)), [0] * n)).loss.backward()
        assert m.prompt_set.toy_map.weight.grad is not None
        if stage == "source":
            save_tensors(tmp_path / "prompts.safetensors", m.trainable_state_dict())
    tgt = built["target"]
    torch.testing.assert_close(tgt.prompt_set.text_prompt.shared, built["source"].prompt_set.text_prompt.shared)
    assert set(tgt.trainable_state_dict()) >= {"toy_map.weight", "text_prompt.shared"}
    # a saved run is checked against the keys the toy method declares
    assert "text.init_std" in prompt_shape_keys()
    other = load_run_config(None, ["prompt.text.init_std=0.5"], data=data())
    with pytest.raises(CheckpointError, match=r"prompt\.text\.init_std=0\.5"):
        check_compatible(cfg, other, "source run", tmp_path)


def test_an_unregistered_method_is_unknown_again():
    assert "toy_shift" not in PROMPT_METHODS
    with pytest.raises(ConfigError, match="toy_shift"):
        CLIPPromptConfig(method="toy_shift").validate()
