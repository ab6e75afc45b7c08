"""CLIP branch: training throughput (images/s), memory and MFU of MCoOp, MVPT and MUPT — ours against the
CoOp/MVLPT reference compute pattern (``clip_reference.py``), measured side by side in one run.

Scenarios (per method):

* ``union_mixed``: the 11 CoOp tasks (2,191 classes at ``--size real``), batches mixing tasks
  (each sample's task drawn proportionally to 16-shot dataset sizes, the core sampler's default);
* ``union_grouped``: the same tasks, one task per batch (tasks at the quantiles of the same rates);
* ``single``: one 1,000-class task.

The reference always encodes every class of every task at context length 77 in half precision;
``ours`` is :class:`mvlpt.clip.CLIPTaskModel` in the core Trainer's precision (``--precision auto``: bf16
autocast on CUDA, fp32 on CPU; fp32 weights), source stage (decomposed per-task prompts) for the union, ``single`` stage for one task.
A step is forward + backward + optimizer step (reference: SGD on half-precision prompts, as CoOp;
ours: the core's AdamW, fused on CUDA).

    python benchmarks/clip_train_throughput.py --size real --device cuda --out benchmarks/results/clip_train_throughput_h100.json
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc  # noqa: E402
import clip_setup as cs  # noqa: E402

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
#: (scenario, reference variant it is compared with)
SCENARIOS = {"union_mixed": "reference_union", "union_grouped": "reference_union", "single": "reference_single"}


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Variant:
    """One model + optimizer + its batches; ``step()`` trains on the next batch, ``round()`` on all of them."""

    def __init__(self, model: torch.nn.Module, loss: Callable[[dict[str, Any]], torch.Tensor],
                 optimizer: torch.optim.Optimizer, batches: list[dict[str, Any]], amp: Callable[[], Any]):
        self.model, self.loss, self.opt, self.batches, self.amp = model, loss, optimizer, batches, amp
        self.i = 0

    def step(self, batch: dict[str, Any] | None = None) -> None:
        if batch is None:
            batch = self.batches[self.i % len(self.batches)]
            self.i += 1
        with self.amp():
            loss = self.loss(batch)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def round(self) -> None:
        for b in self.batches:
            self.step(b)


def build_variants(method: dict[str, Any], size: dict[str, Any], device: torch.device, ref_dtype: torch.dtype,
                   amp: Callable[[], Any], backbone, ref_backbone, tokenizer, union, single, batches
                   ) -> dict[str, Variant]:
    from mvlpt.core.optim import OptimConfig, build_optimizer

    out: dict[str, Variant] = {}
    for tasks, ref_name, ours_names in [(union, "reference_union", ["union_mixed", "union_grouped"]),
                                        (single, "reference_single", ["single"])]:
        ref = cs.build_reference(ref_backbone, tokenizer, tasks, method, ref_dtype).to(device).train()
        sgd = torch.optim.SGD(ref.prompt_parameters(), lr=2e-3, momentum=0.9)
        ref_batches = batches["union_mixed" if ref_name == "reference_union" else "single"]
        out[ref_name] = Variant(ref, lambda b, m=ref: m.loss(b["images"], b["task_ids"], b["global_labels"]), sgd,
                                ref_batches, contextlib.nullcontext)
        stage = "source" if len(tasks) > 1 else "single"
        ours = cs.build_ours(backbone, tokenizer, tasks, method, stage).to(device).train()
        opt = build_optimizer(ours.parameters(), OptimConfig(name="adamw", lr=2e-3))
        for name in ours_names:
            out[name] = Variant(ours, lambda b, m=ours: m.step(b).loss, opt, batches[name], amp)
    return out


def worst_batch(v: Variant) -> dict[str, Any]:
    """The batch of a variant with the most classes to encode (memory is measured on it)."""
    return max(v.batches, key=lambda b: b["_classes"])


def run_method(key: str, size: dict[str, Any], args, device, ref_dtype, amp, models) -> dict[str, Any]:
    method = cs.METHODS[key]
    backbone, ref_backbone, tokenizer, union, single, batches = models
    variants = build_variants(method, size, device, ref_dtype, amp, backbone, ref_backbone, tokenizer, union, single,
                              batches)
    for v in variants.values():  # optimizer state exists before resident memory is counted
        v.step(v.batches[0])
    times = bc.time_interleaved({n: v.round for n, v in variants.items()}, device, size["warmup"], size["repeats"])
    peak = bc.peak_bf16_flops(device, args.peak_tflops)
    frozen = [t for m in (backbone, ref_backbone) for t in list(m.parameters()) + list(m.buffers())]
    results: dict[str, Any] = {}
    for name, v in variants.items():
        images = size["batch_size"] * len(v.batches)
        flops = None if args.no_flops else bc.step_flops(v.round)
        r = bc.summarize(times[name], images, flops, peak)
        mem = bc.step_memory(lambda v=v: v.step(worst_batch(v)), device, exclude=frozen)
        resident = bc.resident_bytes(v.model, v.opt) / 2**20
        if mem["step_peak_mib"] is not None:
            mem["peak_mib"] = resident + mem["step_peak_mib"]
        classes = [b["_classes"] for b in v.batches]
        if name.startswith("reference"):  # the reference encodes every class of its task set every step
            classes = [v.model.prompt_learner.token_prefix.shape[0]]
        results[name] = {**r, **mem, "resident_mib": resident, "classes_encoded_per_step": sum(classes) / len(classes)}
    ratios = {}
    for scen, ref in SCENARIOS.items():
        o, b = results[scen], results[ref]
        ratios[scen] = {"throughput": bc.ratio(o["throughput"], b["throughput"]),
                        "throughput_best": bc.ratio(o["throughput_best"], b["throughput_best"]),
                        "peak_memory": bc.ratio(o["peak_mib"], b["peak_mib"]),
                        "saved_activations": bc.ratio(o["saved_activations_mib"], b["saved_activations_mib"]),
                        "work_reduction": bc.ratio(b.get("flops_per_round"), o.get("flops_per_round"))}
    return {"prompt": method, "variants": results, "ratios": ratios}


def classes_encoded(batch: dict[str, Any], tasks: list[Any]) -> int:
    """Classes whose prompts ours encodes for ``batch`` (those of the tasks present)."""
    return sum(len(tasks[k].classnames) for k in torch.unique(batch["task_ids"]).tolist())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", choices=list(cs.SIZES), default="small")
    ap.add_argument("--methods", default=",".join(cs.METHODS), help=f"comma-separated subset of {list(cs.METHODS)}")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="ours: what the core Trainer runs (auto: bf16 autocast on CUDA, fp32 on CPU; "
                         "train.precision), or bf16 autocast / fp32")
    ap.add_argument("--ours-weights", choices=["fp32", "bf16"], default="fp32",
                    help="dtype of ours' frozen backbone weights: fp32 (the library's default; autocast re-casts "
                         "frozen weights at every use) or bf16 (cast once)")
    ap.add_argument("--ref-dtype", choices=["auto", *DTYPES], default="auto",
                    help="reference weight dtype; auto = fp16 on CUDA (as CoOp), fp32 on CPU (CoOp's prec fp32, "
                         "ours' CPU precision too; CPU fp16 matmuls are ~100x slower, which would flatter ours)")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--steps-per-round", type=int)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (CPU runs)")
    ap.add_argument("--peak-tflops", type=float, help="bf16 peak of the GPU (TFLOP/s) when the name is not known")
    ap.add_argument("--no-flops", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    device = bc.resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    size = dict(cs.SIZES[args.size])
    for k in ("repeats", "warmup", "steps_per_round"):
        if getattr(args, k) is not None:
            size[k] = getattr(args, k)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in cs.METHODS]
    if bad:
        raise SystemExit(f"unknown methods {bad}; choose from {list(cs.METHODS)}")
    # the reference in CoOp's precision on that device: fp16 on CUDA (its default), fp32 on CPU (its `prec: fp32`,
    # the precision ours runs there too, so the CPU ratios compare the work done, not the arithmetic used)
    ref_name = args.ref_dtype if args.ref_dtype != "auto" else ("fp16" if device.type == "cuda" else "fp32")

    from mvlpt.core.runtime import autocast, resolve_precision

    args.precision = resolve_precision(args.precision, device)

    def amp() -> contextlib.AbstractContextManager:
        return autocast(args.precision, device)  # the Trainer's own autocast

    backbone, tokenizer = cs.build_backbone(size, args.seed)
    ref_backbone = cs.reference_backbone(backbone)
    if args.ours_weights == "bf16":
        from clip_reference import cast_clip

        cast_clip(backbone, torch.bfloat16)
    backbone, ref_backbone = backbone.to(device), ref_backbone.to(device)
    union = cs.build_tasks(tokenizer, cs.task_sizes(size["class_scale"]), args.seed)
    single = cs.build_tasks(tokenizer, [("single", max(2, round(1000 * size["class_scale"])))], args.seed + 1)
    probs = [len(t.classnames) * cs.SHOTS for t in union]
    probs = [p / sum(probs) for p in probs]
    image_size = int(backbone.visual.image_size[0] if isinstance(backbone.visual.image_size, (tuple, list))
                     else backbone.visual.image_size)
    n, bs = size["steps_per_round"], size["batch_size"]
    batches = {"union_mixed": cs.make_batches(union, probs, n, bs, image_size, False, args.seed),
               "union_grouped": cs.make_batches(union, probs, n, bs, image_size, True, args.seed),
               "single": cs.make_batches(single, [1.0], n, bs, image_size, False, args.seed)}
    for name, bl in batches.items():
        tasks = single if name == "single" else union
        for b in bl:
            b["_classes"] = classes_encoded(b, tasks)
    batches = {k: [_to(b, device) for b in v] for k, v in batches.items()}
    models = (backbone, ref_backbone, tokenizer, union, single, batches)

    per_method = {}
    for key in methods:
        per_method[key] = run_method(key, size, args, device, DTYPES[ref_name], amp, models)
        print(f"[{key}] done", flush=True)

    rows = []
    for key, res in per_method.items():
        for vname, r in res["variants"].items():
            rows.append({"method": key, "variant": vname, "img/s": r["throughput"], "best": r["throughput_best"],
                         "classes": r["classes_encoded_per_step"], "peak": r["peak_mib"],
                         "act": r["saved_activations_mib"], "tflops": r.get("achieved_tflops"), "mfu": r.get("mfu")})
        for scen, rt in res["ratios"].items():
            rows.append({"method": key, "variant": f"ratio {scen}", "img/s": rt["throughput"],
                         "best": rt["throughput_best"], "peak": rt["peak_memory"], "act": rt["saved_activations"],
                         "tflops": rt["work_reduction"]})
    n_union = sum(len(t.classnames) for t in union)
    model_name = size["model"] if isinstance(size["model"], str) else "small CLIP"
    print(f"\nCLIP prompt-tuning training ({args.size}: {model_name}, batch {bs}, union {n_union} classes / "
          f"{len(union)} tasks, single {len(single[0].classnames)} classes; ours {args.precision} on "
          f"{args.ours_weights} weights, reference {ref_name} weights) on {bc.device_name(device)}")
    table = bc.print_table(rows, [
        ("method", "method"), ("variant", "variant"), ("img/s", "images/s (ratio)"), ("best", "best round"),
        ("classes", "classes/step"), ("peak", "peak MiB (ratio)"), ("act", "saved act. MiB (ratio)"),
        ("tflops", "TFLOP/s (ratio: ref FLOPs / ours)"), ("mfu", "MFU")])
    out = {
        "benchmark": "clip_train_throughput",
        "env": bc.environment(device, ["open_clip_torch"]),
        "config": {"size": args.size, "model": size["model"], "batch_size": bs, "steps_per_round": n,
                   "warmup_rounds": size["warmup"], "repeats": size["repeats"],
                   "ours_precision": args.precision, "ours_weights": args.ours_weights,
                   "reference_dtype": ref_name, "union_tasks": {t.name: len(t.classnames) for t in union},
                   "union_classes": n_union, "single_classes": len(single[0].classnames),
                   "sampling": "proportional to 16-shot sizes", "class_token_position": "end",
                   "methods": {k: cs.METHODS[k] for k in methods}},
        "methods": per_method,
        "headline": {k: v["ratios"] for k, v in per_method.items()},
        "table": table,
        "notes": [
            "throughput = training images per second (forward + backward + optimizer step), median of rounds "
            "interleaved with the reference in one process, after warm-up",
            "peak_mib = the variant's resident tensors (its backbone weights, prompts, optimizer state) + "
            "torch.cuda.max_memory_allocated growth during one step on its largest batch (CUDA only; n/a on CPU)",
            "saved_activations_mib = distinct tensors autograd keeps for backward (frozen weights excluded), any device",
            "MFU = counted FLOPs (torch FlopCounterMode, the variant's own executed work) / time / dense bf16 peak",
            "work_reduction = reference FLOPs / ours FLOPs for the same images (the algorithmic saving; the "
            "throughput ratio approaches it when the device is compute-bound)",
        ],
    }
    if args.out:
        bc.write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
