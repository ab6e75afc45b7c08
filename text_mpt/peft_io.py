"""Export a decomposed (source or target) prompt as a PEFT MPT adapter, and import one back.

The adapter directory holds ``adapter_config.json`` (``peft_type: MULTITASK_PROMPT_TUNING``,
``task_type: SEQ_2_SEQ_LM``) and ``adapter_model.safetensors`` (``prompt_embeddings`` = ``P*``,
``prefix_task_cols`` = ``U``, ``prefix_task_rows`` = ``Vᵀ``), plus ``mvlpt_run.json`` (our run
config, ignored by PEFT). ``num_transformer_submodules`` is 1: PEFT then puts the prompt on the
encoder only, as we do (its seq2seq default of 2 would also prepend prompts to the decoder).
Load it with ``PeftModel.from_pretrained(t5, adapter_dir)`` and call it with ``labels=`` (the answer ids)
and ``task_ids=``: PEFT's MPT forward builds the decoder input from ``labels`` and drops
``decoder_input_ids``. ``base_model_name_or_path`` is ``null`` for the random ``tiny`` T5 (and the shipped
``tiny-t5`` is no hub name): build the base from the run config saved beside the adapter,
``load_backbone(from_dict(BackboneConfig, json.load(open(adapter_dir / "mvlpt_run.json"))["backbone"]))``
(:func:`text_mpt.backbone.load_backbone`, :class:`text_mpt.config.BackboneConfig`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from mvlpt.core.checkpoint import load_run_prompts, load_tensors, save_tensors, write_json
from mvlpt.core.errors import CheckpointError, ShapeMismatchError
from mvlpt.core.prompts import DecomposedPrompt
from mvlpt.core.transfer import from_peft_tensors, to_peft_tensors

from .config import TextRunConfig
from .prompt_io import PROMPT_KEY, prompt_from_tensors, run_meta

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
RUN_FILE = "mvlpt_run.json"


def export_peft(run_path: str | Path, out_dir: str | Path) -> Path:
    """Write the PEFT adapter directory of a source/target run; returns ``out_dir``."""
    tensors, config = load_run_prompts(run_path)
    return write_peft_adapter(tensors, config, out_dir, run_path)


def write_peft_adapter(tensors: Mapping[str, Tensor], config: Mapping[str, Any], out_dir: str | Path,
                       run_path: str | Path) -> Path:
    """The PEFT adapter directory of decomposed prompt tensors (``prompt.*``, as a checkpoint holds them) and
    their run's ``config.json`` (with ``meta``); ``run_path`` names them in errors. Returns ``out_dir``."""
    meta = run_meta(config, run_path)
    prompt = prompt_from_tensors(tensors)
    if not isinstance(prompt, DecomposedPrompt):
        raise CheckpointError(f"{run_path} holds vanilla prompts (a teachers run); PEFT MPT adapters hold decomposed "
                              "prompts: export a source or target run")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone = config.get("backbone", {}).get("name")
    adapter: dict[str, Any] = {
        "peft_type": "MULTITASK_PROMPT_TUNING",
        "task_type": "SEQ_2_SEQ_LM",
        "base_model_name_or_path": None if backbone == "tiny" else backbone,
        "inference_mode": True,
        "num_virtual_tokens": prompt.length,
        "token_dim": prompt.dim,
        "num_transformer_submodules": 1,
        "num_attention_heads": meta.get("num_heads"),
        "num_layers": meta.get("num_layers"),
        "num_tasks": prompt.num_tasks,
        "num_ranks": prompt.rank,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "prompt_tuning_init_state_dict_path": None,
        "prompt_tuning_init_task": 0,
        "tokenizer_name_or_path": None,
        "tokenizer_kwargs": None,
        "modules_to_save": None,
        "revision": None,
        "auto_mapping": None,
    }
    save_tensors(out / ADAPTER_WEIGHTS, to_peft_tensors(prompt), metadata={"format": "pt"})
    write_json(out / ADAPTER_CONFIG, adapter)
    write_json(out / RUN_FILE, config)
    return out


def import_peft(adapter_dir: str | Path, out_dir: str | Path, run_config: TextRunConfig | None = None) -> Path:
    """Turn a PEFT MPT adapter into a checkpoint directory (``prompts.safetensors`` + ``config.json``)
    usable by ``Predictor.from_run``, ``text-mpt eval`` and as ``prompt.source_path``.

    The tasks and backbone come from the adapter's ``mvlpt_run.json`` or, for adapters made
    elsewhere, from ``run_config`` (its task list must match the adapter's task count)."""
    from .pipeline import run_config_dict

    src = Path(adapter_dir)
    cfg_path = src / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{src} has no {ADAPTER_CONFIG}: not a PEFT adapter directory")
    adapter = json.loads(cfg_path.read_text())
    if adapter.get("peft_type") != "MULTITASK_PROMPT_TUNING":
        raise CheckpointError(f"{cfg_path}: peft_type is {adapter.get('peft_type')!r}, expected 'MULTITASK_PROMPT_TUNING'")
    subs = adapter.get("num_transformer_submodules") or (2 if adapter.get("task_type") == "SEQ_2_SEQ_LM" else 1)
    if subs != 1:
        raise CheckpointError(f"{cfg_path}: num_transformer_submodules={subs} (prompts on the encoder and the decoder); "
                              "text-mpt prompts the encoder only and cannot import a decoder prompt")
    prompt = from_peft_tensors(load_tensors(src / ADAPTER_WEIGHTS))
    if run_config is not None:
        config = run_config_dict(run_config, prompt.dim)
    elif (src / RUN_FILE).is_file():
        config = json.loads((src / RUN_FILE).read_text())
    else:
        raise CheckpointError(f"{src} has no {RUN_FILE}: give the run config (tasks, backbone) of this adapter")
    names = config["meta"]["task_names"]
    if len(names) != prompt.num_tasks:
        raise ShapeMismatchError(f"the adapter has {prompt.num_tasks} task(s) but the run config lists {len(names)}: {names}")
    if config["meta"].get("d_model") not in (None, prompt.dim):
        raise ShapeMismatchError(f"the adapter's token_dim is {prompt.dim} but the run's backbone has d_model "
                                 f"{config['meta']['d_model']}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / "prompts.safetensors", {f"{PROMPT_KEY}.{k}": v for k, v in prompt.state_dict().items()})
    write_json(out / "config.json", config)
    return out
