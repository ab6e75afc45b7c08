"""Text branch: training throughput (input tokens/s) and memory of MPT on T5 — ours against PEFT.

Variants, all on the same randomly initialised T5 (one shared frozen backbone), the same batches
(mixed-task, every input exactly ``--input-len`` tokens) and the same precision (the core Trainer's: bf16 autocast on CUDA, fp32 on CPU):

* ``ours``: :class:`text_mpt.model.PromptedT5` with a core ``DecomposedPrompt`` (``P* ⊙ U_k V_kᵀ``,
  rank 1) on the encoder input; the loss is the teacher-forced gold answer (``score_all=False``,
  what a training step without KL distillation needs).
* ``peft``: Hugging Face PEFT's ``MultitaskPromptTuning`` as users run it: for a seq2seq model PEFT's
  default ``num_transformer_submodules=2`` prepends a prompt to the encoder *and* to the decoder
  (so the decoder runs ``l + answer`` positions and the LM head scores all of them).
* ``peft_encoder``: PEFT with ``num_transformer_submodules=1`` (encoder prompt only, the same
  computation as ours) — the like-for-like comparison.
* ``ours_score_all`` (opt-in, ``--variants``): ours scoring every candidate answer, as the source stage
  does when it distils logits (KL) from the teachers.

A step is forward + backward + AdamW step on the prompt parameters. The headline is ours/peft.

    python benchmarks/t5_train_throughput.py --size real --device cuda --out benchmarks/results/t5_train_throughput_h100.json
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc  # noqa: E402

#: model and run sizes: tiny = CI smoke test, small = CPU run, real = t5-base (GPU)
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=512, batch_size=4,
                 input_len=16, prompt_len=4, num_tasks=3, warmup=0, repeats=1, steps_per_round=1),
    # small: t5-base's run shape (batch 32, input 256, prompt 100) on a narrow model whose LM head keeps t5-base's
    # cost relative to a transformer layer (vocab x d_model / layer FLOPs per token ~ 0.3)
    "small": dict(d_model=128, d_ff=512, num_layers=2, num_heads=2, d_kv=64, vocab_size=1024, batch_size=32,
                  input_len=256, prompt_len=100, num_tasks=6, warmup=1, repeats=5, steps_per_round=1),
    # t5-base: https://huggingface.co/t5-base/blob/main/config.json (weights random: speed needs no pretraining)
    "real": dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64, vocab_size=32128, batch_size=32,
                 input_len=256, prompt_len=100, num_tasks=6, warmup=3, repeats=7, steps_per_round=5),
}
VARIANTS = ("ours", "peft", "peft_encoder")
OPTIONAL = ("ours_score_all",)
PAD, EOS = 0, 1


def build_backbone(s: dict[str, Any], seed: int) -> torch.nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=s["vocab_size"], d_model=s["d_model"], d_ff=s["d_ff"], num_layers=s["num_layers"],
                   num_decoder_layers=s["num_layers"], num_heads=s["num_heads"], d_kv=s["d_kv"],
                   feed_forward_proj="relu", decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS,
                   tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(cfg)
    model.requires_grad_(False)
    return model.eval()


def make_batches(s: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` collated mixed-task batches (ours' format) with fixed-length inputs and 1-3 token answers."""
    from text_mpt.data import TextCollator

    g = torch.Generator().manual_seed(seed)
    vocab, k = s["vocab_size"], s["num_tasks"]
    # every task: 2 or 3 classes whose verbalizers are 1-2 tokens + EOS
    cands = [[torch.randint(2, vocab, (int(torch.randint(1, 3, (1,), generator=g)),), generator=g).tolist() + [EOS]
              for _ in range(2 + t % 2)] for t in range(k)]
    collate = TextCollator(PAD)
    batches = []
    for b in range(n):
        items = []
        for i in range(s["batch_size"]):
            t = int(torch.randint(0, k, (1,), generator=g))
            ids = torch.randint(2, vocab, (s["input_len"] - 1,), generator=g).tolist() + [EOS]
            items.append({"input_ids": ids, "cand_ids": cands[t], "label": int(torch.randint(0, len(cands[t]), (1,), generator=g)),
                          "value": None, "example_id": i, "task_id": t, "index": b * s["batch_size"] + i})
        batches.append(collate(items))
    return batches


def peft_labels(batch: dict[str, Any]) -> torch.Tensor:
    """Gold answer ids ``(B, L)`` padded with -100 (what PEFT / Hugging Face losses expect)."""
    rows = torch.arange(batch["labels"].shape[0])
    ids, m = batch["cand_ids"][rows, batch["labels"]], batch["cand_mask"][rows, batch["labels"]]
    return ids.masked_fill(~m, -100)


def build_variant(name: str, backbone: torch.nn.Module, s: dict[str, Any]) -> tuple[torch.nn.Module, Callable]:
    """The trainable model of a variant and its ``forward(batch) -> loss``."""
    if name in ("ours", "ours_score_all"):
        from mvlpt.core.prompts import DecomposedPrompt
        from text_mpt.model import PromptedT5
        from text_mpt.tasks import custom_task

        specs = [custom_task(f"task{t}", "{text}", [f"c{j}" for j in range(2 + t % 2)]) for t in range(s["num_tasks"])]
        torch.manual_seed(1)
        prompt = DecomposedPrompt(s["num_tasks"], (s["prompt_len"], s["d_model"]), rank=1)
        model = PromptedT5(backbone, prompt, specs, score_all=name == "ours_score_all")
        return model, lambda b: model.step(b).loss
    from peft import MultitaskPromptTuningConfig, get_peft_model

    cfg = MultitaskPromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=s["prompt_len"],
                                      num_tasks=s["num_tasks"], num_ranks=1, prompt_tuning_init="RANDOM",
                                      num_transformer_submodules=1 if name == "peft_encoder" else None)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(backbone, cfg)

    def forward(b: dict[str, Any]) -> torch.Tensor:
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["peft_labels"],
                     task_ids=b["task_ids"]).loss

    return model, forward


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", choices=list(SIZES), default="small")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="the same for every variant: auto = the core Trainer's (bf16 autocast on CUDA, fp32 on CPU)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {VARIANTS + OPTIONAL}")
    ap.add_argument("--repeats", type=int, help="timed rounds per variant (default: per size)")
    ap.add_argument("--warmup", type=int, help="untimed rounds per variant (default: per size)")
    ap.add_argument("--steps-per-round", type=int)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (CPU runs)")
    ap.add_argument("--peak-tflops", type=float, help="bf16 peak of the GPU (TFLOP/s) when the name is not known")
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON result path")
    args = ap.parse_args(argv)

    device = bc.resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    s = dict(SIZES[args.size])
    for k in ("repeats", "warmup", "steps_per_round"):
        if getattr(args, k) is not None:
            s[k] = getattr(args, k)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS + OPTIONAL]
    if bad:
        raise SystemExit(f"unknown variants {bad}; choose from {VARIANTS + OPTIONAL}")

    from mvlpt.core.optim import OptimConfig, build_optimizer

    backbone = build_backbone(s, args.seed).to(device)
    batches = make_batches(s, max(1, s["steps_per_round"]), args.seed)
    for b in batches:
        b["peft_labels"] = peft_labels(b)
    batches = [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]

    from mvlpt.core.runtime import autocast, resolve_precision

    args.precision = resolve_precision(args.precision, device)

    def amp() -> contextlib.AbstractContextManager:
        return autocast(args.precision, device)  # the Trainer's own autocast, for every variant

    steps: dict[str, Callable[[], None]] = {}
    rounds: dict[str, Callable[[], None]] = {}
    extra: dict[str, dict[str, Any]] = {}
    for name in variants:
        model, forward = build_variant(name, backbone, s)
        model.to(device).train()
        backbone.eval()  # frozen backbone: dropout off (PromptedT5's default; PEFT's train() would turn it on)
        opt = build_optimizer(model.parameters(), OptimConfig(lr=0.3))
        cursor = {"i": 0}

        def one_step(forward=forward, opt=opt, cursor=cursor) -> None:
            b = batches[cursor["i"] % len(batches)]
            cursor["i"] += 1
            with amp():
                loss = forward(b)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def one_round(one_step=one_step) -> None:
            for _ in range(s["steps_per_round"]):
                one_step()

        one_step()  # creates the optimizer state before it is counted
        extra[name] = {"resident_mib": bc.resident_bytes(model, opt) / 2**20,
                       "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
        steps[name], rounds[name] = one_step, one_round

    times = bc.time_interleaved(rounds, device, s["warmup"], s["repeats"])
    peak = bc.peak_bf16_flops(device, args.peak_tflops)
    frozen = list(backbone.parameters()) + list(backbone.buffers())
    tokens_per_round = s["batch_size"] * s["input_len"] * s["steps_per_round"]
    results: dict[str, Any] = {}
    for name in variants:
        flops = None if args.no_flops else bc.step_flops(steps[name]) * s["steps_per_round"]
        r = bc.summarize(times[name], tokens_per_round, flops, peak)
        mem = bc.step_memory(steps[name], device, exclude=frozen)
        if mem["step_peak_mib"] is not None:
            mem["peak_mib"] = extra[name]["resident_mib"] + mem["step_peak_mib"]
        results[name] = {**r, **mem, **extra[name]}

    ratios: dict[str, Any] = {}
    if "ours" in results:
        for base in [v for v in variants if not v.startswith("ours")]:
            o, b = results["ours"], results[base]
            ratios[f"ours/{base}"] = {
                "throughput": bc.ratio(o["throughput"], b["throughput"]),
                "throughput_best": bc.ratio(o["throughput_best"], b["throughput_best"]),
                "peak_memory": bc.ratio(o["peak_mib"], b["peak_mib"]),
                "saved_activations": bc.ratio(o["saved_activations_mib"], b["saved_activations_mib"]),
                "work_reduction": bc.ratio(b.get("flops_per_round"), o.get("flops_per_round")),
            }
    rows = [{"variant": n, "tok/s": r["throughput"], "best": r["throughput_best"], "s": r["round_s_median"],
             "peak": r["peak_mib"], "act": r["saved_activations_mib"], "tflops": r.get("achieved_tflops"),
             "mfu": r.get("mfu")} for n, r in results.items()]
    rows += [{"variant": k, "tok/s": v["throughput"], "best": v["throughput_best"], "peak": v["peak_memory"],
              "act": v["saved_activations"], "tflops": v["work_reduction"]} for k, v in ratios.items()]
    print(f"\nT5 MPT training ({args.size}: d_model {s['d_model']}, {s['num_layers']}+{s['num_layers']} layers, "
          f"batch {s['batch_size']}, input {s['input_len']}, prompt {s['prompt_len']}, {args.precision}) "
          f"on {bc.device_name(device)}")
    table = bc.print_table(rows, [
        ("variant", "variant"), ("tok/s", "tokens/s (ratio)"), ("best", "best round"), ("s", "s/round"),
        ("peak", "peak MiB (ratio)"), ("act", "saved act. MiB (ratio)"),
        ("tflops", "TFLOP/s (ratio: base FLOPs / ours)"), ("mfu", "MFU")])
    out = {
        "benchmark": "t5_train_throughput",
        "env": bc.environment(device, ["transformers", "peft"]),
        "config": {"size": args.size, "precision": args.precision, **s,
                   "attn_implementation": getattr(backbone.config, "_attn_implementation", None),
                   "optimizer": "AdamW (mvlpt.core.optim, fused on CUDA)", "data": "synthetic mixed-task batches, "
                   "fixed-length inputs, 1-2 token answers + EOS"},
        "variants": results,
        "ratios": ratios,
        "headline": ratios.get("ours/peft"),
        "table": table,
        "notes": [
            "throughput = encoder input tokens (prompt excluded) per second of training step "
            "(forward + backward + AdamW step), median of interleaved rounds after warm-up",
            "peak_mib = the variant's own resident tensors (weights it uses, prompts, optimizer state) + "
            "torch.cuda.max_memory_allocated growth during one step (CUDA only; n/a on CPU)",
            "saved_activations_mib = distinct tensors autograd keeps for backward (frozen weights excluded), any device",
            "peft = PEFT MultitaskPromptTuning as users run it on seq2seq (num_transformer_submodules=2: prompts on "
            "encoder and decoder); peft_encoder = num_transformer_submodules=1 (same computation as ours)",
        ],
    }
    if args.out:
        bc.write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
