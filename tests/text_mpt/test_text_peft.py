"""Export a decomposed prompt as a PEFT MPT adapter, load it with ``peft``, import it back."""

import json

import pytest
import torch

from tmpt_helpers import batch_for, tiny_backbone

from mvlpt.core.checkpoint import load_run_prompts, save_checkpoint_dir
from mvlpt.core.errors import CheckpointError
from mvlpt.core.prompts import DecomposedPrompt
from text_mpt.config import load_run_config
from text_mpt.inference import Predictor, load_trained
from text_mpt.peft_io import export_peft, import_peft
from text_mpt.pipeline import run_config_dict

peft = pytest.importorskip("peft")

TASKS = [{"name": "polarity", "template": "polarity: {text}", "labels": ["negative", "positive"]},
         {"name": "topic", "template": "topic: {text}", "labels": ["sports", "food", "tech"]}]


@pytest.fixture
def run_dir(tmp_path):
    cfg = load_run_config(None, data={"stage": "source", "output_dir": str(tmp_path / "src"), "tasks": TASKS,
                                      "backbone": {"name": "tiny"}, "prompt": {"length": 5, "rank": 2},
                                      "train": {"distill": {"kl_weight": 0, "mse_weight": 0}}})
    torch.manual_seed(3)
    prompt = DecomposedPrompt(2, (5, 32), rank=2, init_std=0.5)
    bb = tiny_backbone()
    save_checkpoint_dir(tmp_path / "src" / "checkpoints" / "best", {f"prompt.{k}": v for k, v in prompt.state_dict().items()},
                        run_config_dict(cfg, 32, backbone_config=bb.config))
    return tmp_path / "src"


def test_peft_round_trip(run_dir, tmp_path):
    adapter = export_peft(run_dir, tmp_path / "adapter")
    conf = json.loads((adapter / "adapter_config.json").read_text())
    assert conf["peft_type"] == "MULTITASK_PROMPT_TUNING" and conf["num_transformer_submodules"] == 1
    assert (adapter / "adapter_model.safetensors").is_file()

    # PEFT loads it and computes the same prompts and the same decoder logits as our model
    from peft import PeftModel

    pm = PeftModel.from_pretrained(tiny_backbone(), str(adapter)).eval()
    ours, _, _ = load_trained(run_dir)
    task_ids = torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(pm.get_prompt(batch_size=4, task_ids=task_ids), ours.prompt(task_ids))
    batch = batch_for([(0, "good film", 1), (1, "soup", 1), (1, "a ball", 0), (0, "awful", 0)])
    rows = torch.arange(4)
    gold = batch["cand_ids"][rows, batch["labels"]]
    with torch.no_grad():
        p_out = pm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=gold, task_ids=task_ids)
        hidden, mask = ours.encode(batch)
        logits = ours.decoder_logits(hidden, mask, ours.backbone._shift_right(gold))
    torch.testing.assert_close(p_out.logits, logits, atol=1e-5, rtol=1e-5)

    # import back: identical tensors, usable by the predictor
    back = import_peft(adapter, tmp_path / "imported")
    a, _ = load_run_prompts(run_dir)
    b, cfg = load_run_prompts(back)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert cfg["meta"]["task_names"] == ["polarity", "topic"]
    answers = Predictor.from_run(back, device="cpu").predict([{"task": "topic", "text": "bread"}])
    assert answers[0]["answer"] in ("sports", "food", "tech")


def test_peft_import_refuses_decoder_prompts_and_other_types(run_dir, tmp_path):
    adapter = export_peft(run_dir, tmp_path / "adapter")
    conf = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**conf, "num_transformer_submodules": 2}))
    with pytest.raises(CheckpointError, match="encoder only"):
        import_peft(adapter, tmp_path / "x")
    (adapter / "adapter_config.json").write_text(json.dumps({**conf, "peft_type": "LORA"}))
    with pytest.raises(CheckpointError, match="MULTITASK_PROMPT_TUNING"):
        import_peft(adapter, tmp_path / "x")
