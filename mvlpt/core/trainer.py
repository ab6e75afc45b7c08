"""The one training loop: every MPT stage (teachers, source, target) of every head.

A head passes a :class:`~mvlpt.core.task_model.TaskModel`, per-task training datasets
and a collate function. Stages differ only in configuration: which prompt module the
task model holds, which parameter groups train, and whether a frozen teacher task
model supplies distillation targets.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .config import to_dict
from .distill import kl_distillation, mse_distillation
from .distributed import all_reduce_mean, any_true, barrier, broadcast_object, init_distributed
from .errors import MVLPTError, NonFiniteLossError
from .evaluation import evaluate as evaluate_model
from . import health as health_checks
from .mechanism import mechanism_stats, snapshot
from .logging_utils import MetricsLogger
from .optim import build_optimizer, build_scheduler
from .run_dir import bind_run_dir, fingerprint
from .run_lock import LOCK_FILE, RunLock
from .runtime import autocast, freeze, move_to, resolve_device, resolve_precision, seed_everything
from .sampling import MultiTaskBatchSampler, MultiTaskDataset
from .task_model import StepOutput, TaskModel
from .train_config import TrainConfig

__all__ = ["Trainer"]


class Trainer:
    """Runs training with periodic evaluation, checkpoints and exact resume.

    Args:
        model: the student task model (its trainable parameters are the prompts).
        train_datasets: one dataset per task id (dict samples).
        collate_fn: list of samples (each with ``task_id`` and ``index``) → batch dict.
        cfg: loop settings.
        run_dir: output directory (checkpoints, metrics.jsonl, results).
        eval_datasets: one dataset per task id for periodic evaluation (optional).
        teacher: frozen task model for distillation (source stage), same batches.
        run_config: the full resolved run config saved next to every checkpoint. It binds ``run_dir``
            (:mod:`mvlpt.core.run_dir`): :meth:`fit` resumes or returns a run of the same fingerprint and
            refuses a directory holding a run of another config.
        fresh: :meth:`fit` deletes the directory's previous contents first and trains from scratch.
    """

    RESULT_FILE = "result.json"

    def __init__(
        self,
        model: TaskModel,
        train_datasets: Sequence[Dataset],
        collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]],
        cfg: TrainConfig,
        run_dir: str | Path,
        eval_datasets: Sequence[Dataset] | None = None,
        teacher: TaskModel | None = None,
        run_config: dict[str, Any] | None = None,
        fresh: bool = False,
        eval_split: str | None = None,
    ):
        self.cfg = cfg
        self.eval_split = eval_split  # what eval_datasets are (e.g. "val"): result.json says so
        self.fresh = fresh
        self.info = init_distributed(cfg.device if cfg.device != "auto" else None)
        self.device = resolve_device(cfg.device, self.info)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.model = model.to(self.device)
        self.teacher = freeze(teacher.to(self.device)) if teacher is not None else None
        self.train_datasets = list(train_datasets)
        self.eval_datasets = list(eval_datasets) if eval_datasets is not None else None
        self.collate_fn = collate_fn
        self.run_config = run_config if run_config is not None else {"train": to_dict(cfg)}
        self.fingerprint = fingerprint(self.run_config)
        self.logger = MetricsLogger(self.run_dir, enabled=self.info.is_main, tensorboard=cfg.tensorboard)
        self.step = 0
        self.best: dict[str, Any] = {"score": None, "step": None, "metrics": {}}
        self.skipped = 0
        self.consumed = 0  # micro-batches drawn from the sampler (skipped ones included)
        self._consecutive_skips = 0

        self.precision = resolve_precision(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    # ------------------------------------------------------------------ helpers
    def _autocast(self):
        return autocast(self.precision, self.device)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _loader(self, sampler) -> DataLoader:
        ds = MultiTaskDataset(self.train_datasets, seed=self.cfg.seed)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=self.collate_fn, num_workers=self.cfg.num_workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    def _loss(self, batch: dict[str, Any], forward: Callable[[dict[str, Any]], StepOutput]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The step's loss and its logged terms, as detached tensors: nothing here waits for the device
        (they are read to the host once per logging step, :meth:`_host_means`)."""
        with self._autocast():
            out = forward(batch)
            loss = out.loss
            task_loss = out.loss.detach()
            logs: dict[str, Any] = {"task_loss": task_loss, **out.metrics}
            d = self.cfg.distill
            if self.teacher is not None and (d.kl_weight > 0 or d.mse_weight > 0):
                with torch.no_grad():
                    t_out = self.teacher.step(batch)
                if d.kl_weight > 0 and out.logits is not None and t_out.logits is not None:
                    kl = kl_distillation(out.logits, t_out.logits, d.temperature, out.logit_mask)
                    loss = loss + d.kl_weight * kl
                    logs["kl_loss"] = kl.detach()
                if d.mse_weight > 0 and out.hidden is not None and t_out.hidden is not None:
                    mse = mse_distillation(out.hidden, t_out.hidden, out.hidden_mask)
                    loss = loss + d.mse_weight * mse
                    logs["mse_loss"] = mse.detach()
                # each term's share of the total loss (NaN when the total is 0 or not finite)
                total = loss.detach()
                total = torch.where((total != 0) & torch.isfinite(total), total, torch.full_like(total, math.nan))
                logs["task_share"] = task_loss / total
                if "kl_loss" in logs:
                    logs["kl_share"] = d.kl_weight * logs["kl_loss"] / total
                if "mse_loss" in logs:
                    logs["mse_share"] = d.mse_weight * logs["mse_loss"] / total
        logs["loss"] = loss.detach()
        return loss, logs

    def _host_means(self, window: list[dict[str, Any]]) -> dict[str, float]:
        """Mean of each logged term over the steps of ``window`` (a step without the term, or with NaN,
        is left out), read to the host in one transfer."""
        keys = list(window[-1])

        def value(v: Any) -> torch.Tensor:
            if isinstance(v, torch.Tensor):
                return v.detach().reshape(()).to(self.device, torch.float32)
            return torch.tensor(float(v), dtype=torch.float32, device=self.device)

        vals = torch.stack([torch.stack([value(w.get(k, math.nan)) for k in keys]) for w in window]).cpu()
        ok = ~torch.isnan(vals)
        means = torch.where(ok, vals, torch.zeros_like(vals)).sum(0) / ok.sum(0).clamp(min=1)
        return {k: float(m) if n else math.nan for k, m, n in zip(keys, means.tolist(), ok.sum(0).tolist())}

    # ------------------------------------------------------------------ checkpoints
    def _state(self, optimizer, scheduler, sampler) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        opt_tensors, opt_meta = ckpt.optimizer_to_flat(optimizer)
        rng_tensors, rng_meta = ckpt.rng_state()
        state = {
            "step": self.step,
            "scheduler": scheduler.state_dict(),
            "sampler": {"batches_consumed": self.consumed},
            "optimizer": opt_meta,
            "rng": rng_meta,
            "best": self.best,
            "skipped_batches": self.skipped,
            "world_size": self.info.world_size,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
        }
        return {**opt_tensors, **rng_tensors}, state

    def save(self, optimizer, scheduler, sampler) -> Path | None:
        """Write ``checkpoints/step_<n>`` (rank 0 only) and prune old ones."""
        path = None
        if self.info.is_main:
            tensors, state = self._state(optimizer, scheduler, sampler)
            name = f"step_{self.step}"
            path = ckpt.save_checkpoint_dir(self.ckpt_dir / name, self.model.trainable_state_dict(), self.run_config,
                                            tensors, state)
            ckpt.set_latest(self.ckpt_dir, name)
            ckpt.prune_checkpoints(self.ckpt_dir, self.cfg.keep_last, path)
        barrier(self.info)
        return path

    def _resume(self, path: Path, optimizer, scheduler, sampler) -> None:
        state = ckpt.read_json(path / ckpt.STATE_FILE)
        tensors = ckpt.load_tensors(path / ckpt.OPTIM_FILE)
        self.model.load_trainable_state_dict(ckpt.load_tensors(path / ckpt.PROMPTS_FILE))
        ckpt.optimizer_from_flat(optimizer, tensors, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        ckpt.set_rng_state(tensors, state["rng"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best = state["best"]
        self.skipped = int(state.get("skipped_batches", 0))
        self.consumed = int(state["sampler"]["batches_consumed"])
        self.logger.truncate_after(self.step)

    def _save_best(self, metrics: dict[str, float]) -> None:
        key = self.cfg.select_metric
        if key not in metrics:
            return
        score = metrics[key]
        best = self.best["score"]
        tie = best is not None and score == best and self.cfg.select_ties == "last"
        better = best is None or tie or (score > best if self.cfg.select_mode == "max" else score < best)
        if better:
            self.best = {"score": score, "step": self.step, "metrics": metrics}
            if self.info.is_main:
                ckpt.save_checkpoint_dir(self.ckpt_dir / "best", self.model.trainable_state_dict(), self.run_config)
                ckpt.write_json(self.ckpt_dir / "best" / "metrics.json", {"step": self.step, **metrics})

    # ------------------------------------------------------------------ mechanism figures, health
    START_FILE = "start_prompts.safetensors"

    def _start_snapshot(self, resumed: bool) -> None:
        """The prompts at the start of the run (kept in ``checkpoints/start_prompts.safetensors`` so
        that a resumed run measures factor movement from the same start)."""
        self._start = snapshot(self.model.prompt_modules())
        with torch.no_grad():
            self._start_diag = self.model.diagnostics() if self.cfg.health.enabled and not resumed else {}
        path = self.ckpt_dir / self.START_FILE
        if resumed and path.is_file():
            tensors = ckpt.load_tensors(path)
            for name, m in self._start.items():
                sub = ckpt.sub_state(tensors, f"{name}.")
                if sub:
                    ckpt.load_module_state(m, sub, where=f"{self.START_FILE}:{name}")
        elif self.info.is_main and not resumed and self._start:
            path.parent.mkdir(parents=True, exist_ok=True)
            ckpt.save_tensors(path, self.model.trainable_state_dict())

    def mechanism(self) -> dict[str, float]:
        """MPT mechanism figures of the current prompts (see :mod:`mvlpt.core.mechanism`)."""
        return mechanism_stats(self.model.prompt_modules(), getattr(self, "_start", None),
                               list(getattr(self.model, "task_names", [])), self.model.reference_norms())

    def check_health(self, metrics: dict[str, float]) -> dict[str, Any]:
        """End-of-stage health checks on ``metrics`` (writes ``health.json``; strict → error)."""
        hc = self.cfg.health
        mech = self.mechanism()
        with torch.no_grad():
            diag = self.model.diagnostics() if hc.enabled else {}
        chance = self.model.chance_levels()
        start_diag = getattr(self, "_start_diag", {})
        problems = (health_checks.find_problems(metrics, chance, self.model.metric_scale, diag, mech, hc, start_diag)
                    if hc.enabled else [])
        out = {"ok": not problems, "problems": problems, "mechanism": mech, "diagnostics": diag}
        if self.info.is_main:
            ckpt.write_json(self.run_dir / "mechanism.json", {"step": self.step, **mech})
            health_checks.write_health(self.run_dir, problems, {"metrics": {k: metrics[k] for k in chance if k in metrics},
                                                                 "chance": chance, **diag,
                                                                 **{f"{k}@start": v for k, v in start_diag.items()}})
            if hc.enabled:
                self.logger.log(self.step, "health", {"ok": not problems, **diag})
            health_checks.report(problems, f"this run ({self.run_dir})", hc.strict)
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, datasets: Sequence[Dataset] | None = None, model: TaskModel | None = None) -> dict[str, float]:
        """Evaluate on one dataset per task (default: the evaluation sets); records are gathered over ranks
        (each example once), see :func:`mvlpt.core.evaluation.evaluate`. Never draws training data.
        ``model``: another task model to evaluate with this loop's settings (e.g. a zero-shot baseline)."""
        datasets = list(datasets) if datasets is not None else self.eval_datasets
        if not datasets:
            return {}
        return evaluate_model(self.model if model is None else model, datasets, self.collate_fn, self.cfg,
                              info=self.info, device=self.device, precision=self.precision)

    def evaluate_selected(self, fit_result: dict[str, Any], datasets: Sequence[Dataset],
                          split: str = "test") -> dict[str, Any]:
        """After :meth:`fit`: load the best checkpoint on the evaluation (validation) sets, when there is
        one, and evaluate it on ``datasets`` (the reported split); without one, the last step's prompts.
        Logs a ``split`` line with ``checkpoint_step``. Returns ``{"metrics", "step", "val_metrics", "selected"}``."""
        best = fit_result.get("best") or {}
        best_file = self.ckpt_dir / "best" / ckpt.PROMPTS_FILE
        selected = best.get("step") is not None and best_file.is_file()
        if selected:
            self.model.load_trainable_state_dict(ckpt.load_tensors(best_file))
            step, val_metrics = int(best["step"]), dict(best.get("metrics") or {})
        else:
            step, val_metrics = int(fit_result["step"]), dict(fit_result.get("final") or {})
        metrics = self.evaluate(datasets)
        log = MetricsLogger(self.run_dir, enabled=self.info.is_main)
        log.drop(int(fit_result["step"]), split)  # a finished run evaluated again keeps one such line
        log.log(int(fit_result["step"]), split, {**metrics, "checkpoint_step": step})
        return {"metrics": metrics, "step": step, "val_metrics": val_metrics, "selected": selected}

    # ------------------------------------------------------------------ training
    def fit(self, resume: bool = True, fresh: bool | None = None) -> dict[str, Any]:
        """Train for ``max_steps`` (continuing from the latest complete checkpoint when ``resume``).

        Holds the run directory's lock (:class:`~mvlpt.core.run_lock.RunLock`) throughout and binds the
        directory to ``run_config`` first (:func:`~mvlpt.core.run_dir.bind_run_dir`): a run of another
        config is refused, ``fresh`` (default: the constructor's) clears it. A finished run of the same
        config returns its saved result (``result.json``) without training.

        Returns ``{"final": metrics, "best": {...}, "step": n, "skipped_batches": k, "fingerprint", ...}``;
        ``final`` and ``best`` are on the ``eval_datasets``, which ``"eval_split"`` names when the
        constructor was given it (the heads: ``val`` when selecting; the reported metrics are in
        ``results.md`` / ``results.csv``)."""
        fresh = self.fresh if fresh is None else fresh
        lock = RunLock(self.run_dir) if self.info.is_main else None
        self._bound = self._claim(lock, fresh)
        try:
            return self._fit(resume and not fresh)
        finally:
            if lock is not None:
                lock.release()

    def _claim(self, lock: RunLock | None, fresh: bool) -> bool:
        """Lock and bind the run directory (rank 0; the others raise its error too). True: it held this run."""
        err: BaseException | None = None
        bound = False
        if lock is not None:
            try:
                lock.acquire()
                bound = bind_run_dir(self.run_dir, self.run_config, fresh, keep=(LOCK_FILE,))
            except BaseException as e:  # every rank must learn about it; Ctrl-C releases the lock too
                lock.release()
                if not isinstance(e, Exception):
                    raise
                err = e
        msg = broadcast_object(None if err is None else str(err), self.info)
        if err is not None:
            raise err
        if msg is not None:
            raise MVLPTError(msg)
        barrier(self.info)
        return bool(broadcast_object(bound, self.info))

    def _say(self, text: str) -> None:
        if self.info.is_main:
            print(text, flush=True)

    def _fit(self, resume: bool) -> dict[str, Any]:
        cfg = self.cfg
        seed_everything(cfg.seed + self.info.rank, cfg.deterministic)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        params = self.trainable_parameters()
        named = self.model.parameter_groups()
        optimizer = build_optimizer(params, cfg.optim, named)
        self._clip_units = self._clip_groups(params, named)
        scheduler = build_scheduler(optimizer, cfg.max_steps, cfg.schedule)
        sizes = [len(d) for d in self.train_datasets]
        sampler = MultiTaskBatchSampler(sizes, cfg.batch_size, cfg.sampling, seed=cfg.seed,
                                        rank=self.info.rank, world_size=self.info.world_size)
        latest, skipped = ckpt.find_checkpoint(self.ckpt_dir) if resume else (None, [])
        for line in skipped:
            self._say(line)
        if latest is not None:
            self._resume(latest, optimizer, scheduler, sampler)
            where = f"{latest.parent.name}/{latest.name}"
            saved = self.run_dir / self.RESULT_FILE
            if self.step >= cfg.max_steps and saved.is_file():
                self._say(f"already finished at step {self.step}; returning the saved result ({where}, {saved.name})")
                self.logger.close()
                return ckpt.read_json(saved)
            if self.step >= cfg.max_steps:
                self._say(f"already finished at step {self.step} ({where}); evaluating it (no saved result)")
            else:
                self._say(f"resuming from step {self.step} ({where})")
        elif self._bound:
            why = "not resuming" if not resume else f"no complete checkpoint in {self.ckpt_dir}"
            self._say(f"{why}: starting from step 0 (checkpoints that are there are kept until replaced)"
                      if skipped else f"{why}: starting from step 0")
            self.logger.truncate_after(-1)  # nothing of an earlier attempt stays in metrics.jsonl
        self._start_snapshot(resumed=latest is not None)

        forward: Callable[[dict[str, Any]], StepOutput] = self.model
        if self.info.enabled:
            forward = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                              broadcast_buffers=False)  # frozen backbones: nothing to sync
        if cfg.eval_at_start and self.step == 0 and self.eval_datasets:
            metrics = self.evaluate()
            self.logger.log(0, "eval", metrics)
            self.logger.log(0, "mechanism", self.mechanism())
            self._save_best(metrics)  # the start is a candidate: training that only hurts val selects it
        self.model.train()
        loader_iter = iter(self._loader(sampler))
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not (cfg.progress and self.info.is_main))
        window: list[dict[str, Any]] = []
        last_eval: tuple[int, dict[str, float]] | None = None
        t0 = time.perf_counter()
        try:
            while self.step < cfg.max_steps:
                logs = self._train_step(loader_iter, forward, optimizer, scheduler, params)
                if logs is None:
                    continue  # skipped non-finite batch
                self.step += 1
                bar.update(1)
                window.append(logs)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    avg = {k: v for k, v in self._host_means(window).items() if not math.isnan(v)}
                    avg = all_reduce_mean(avg, self.info, self.device)
                    avg["lr"] = scheduler.get_last_lr()[0]
                    avg["elapsed_s"] = round(time.perf_counter() - t0, 3)
                    self.logger.log(self.step, "train", avg)
                    bar.set_postfix(loss=f"{avg['loss']:.4f}")
                    window = []
                last = self.step == cfg.max_steps
                if self.eval_datasets and ((cfg.eval_every and self.step % cfg.eval_every == 0) or last):
                    metrics = self.evaluate()
                    last_eval = (self.step, metrics)
                    self.logger.log(self.step, "eval", metrics)
                    self.logger.log(self.step, "mechanism", self.mechanism())
                    self._save_best(metrics)
                if (cfg.save_every and self.step % cfg.save_every == 0) or last:
                    self.save(optimizer, scheduler, sampler)
        except KeyboardInterrupt:
            bar.close()
            if self.info.is_main:
                print(f"\ninterrupted: writing a checkpoint at step {self.step} before exiting", flush=True)
            self.save(optimizer, scheduler, sampler)
            self.logger.close()
            raise
        except BaseException:
            self.logger.close()
            raise
        finally:
            bar.close()
        if last_eval is not None and last_eval[0] == self.step:
            final = last_eval[1]  # evaluated at the last step already
        else:
            final = self.evaluate() if self.eval_datasets else {}
        try:
            health = self.check_health(final)
        finally:
            self.logger.close()
        result = {**({"eval_split": self.eval_split} if self.eval_split else {}),
                  "final": final, "best": self.best, "step": self.step, "skipped_batches": self.skipped,
                  "mechanism": health["mechanism"], "health": {"ok": health["ok"], "problems": health["problems"],
                                                               **health["diagnostics"]},
                  "fingerprint": self.fingerprint}
        if self.info.is_main:
            ckpt.write_json(self.run_dir / self.RESULT_FILE, result)
        return result

    def _clip_groups(self, params: list[torch.nn.Parameter],
                     named: dict[str, list[torch.nn.Parameter]]) -> list[tuple[torch.nn.Parameter, int | None]] | None:
        """Clipping units for ``clip_grad_scope: per_task``: (parameter, task row) for each row of the
        task-indexed groups (vanilla prompts, factors: leading dim = tasks), (parameter, None) for the
        rest (``P*``, mappings); None for global clipping."""
        if self.cfg.clip_grad_scope != "per_task":
            return None
        per_task = [p for g in ("task_prompts", "task_factors") for p in named.get(g, []) if p.dim() > 0]
        units: list[tuple[torch.nn.Parameter, int | None]] = [(p, k) for p in per_task for k in range(p.shape[0])]
        seen = {id(p) for p in per_task}
        units.extend((p, None) for p in params if id(p) not in seen)
        return units

    def _clip(self, params: list[torch.nn.Parameter]) -> torch.Tensor:
        """Clip gradients to ``clip_grad_norm`` (per task or globally); returns the global norm before clipping
        (a device tensor: read to the host only at logging steps)."""
        max_norm = self.cfg.clip_grad_norm
        if self._clip_units is None:
            return torch.nn.utils.clip_grad_norm_(params, max_norm).detach()
        groups: dict[object, list[torch.Tensor]] = {}
        for p, k in self._clip_units:
            if p.grad is not None:
                groups.setdefault(("task", k) if k is not None else "shared", []).append(p.grad if k is None else p.grad[k])
        sq = []
        for grads in groups.values():
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            sq.append(norm ** 2)
            scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
            for g in grads:
                g.mul_(scale.to(g.dtype))
        return torch.stack(sq).sum().sqrt() if sq else torch.zeros(())

    def _train_step(self, loader_iter, forward, optimizer, scheduler, params) -> dict[str, Any] | None:
        """One optimizer step over ``grad_accum_steps`` micro-batches. Its one host sync is the non-finite
        check (``train.nonfinite`` skips or stops on such a batch); the logged terms stay on the device."""
        cfg = self.cfg
        accum = cfg.grad_accum_steps
        micro_logs: list[dict[str, Any]] = []
        nonfinite = False
        for micro in range(accum):
            batch = move_to(next(loader_iter), self.device)
            self.consumed += 1
            sync = contextlib.nullcontext()
            if isinstance(forward, DistributedDataParallel) and micro < accum - 1:
                sync = forward.no_sync()
            with sync:
                loss, logs = self._loss(batch, forward)
                if not torch.isfinite(loss.detach()):
                    nonfinite = True
                self.scaler.scale(loss / accum).backward()
            micro_logs.append(logs)
        if any_true(nonfinite, self.info, self.device):
            optimizer.zero_grad(set_to_none=True)
            if cfg.nonfinite == "stop":
                raise NonFiniteLossError(
                    f"non-finite loss at step {self.step + 1} (losses {[float(l['loss']) for l in micro_logs]}); "
                    f"stopped. The last good checkpoint is kept in {self.ckpt_dir}. Lower the learning rate, "
                    "check the data, or set train.nonfinite=skip to skip such batches."
                )
            self.skipped += 1
            self._consecutive_skips += 1
            if self._consecutive_skips > cfg.max_skipped:
                raise NonFiniteLossError(f"{self._consecutive_skips} non-finite batches in a row at step {self.step + 1}; stopping")
            self.logger.log(self.step + 1, "train", {"skipped_nonfinite": 1.0})
            return None
        self._consecutive_skips = 0
        if cfg.clip_grad_norm > 0:
            self.scaler.unscale_(optimizer)
            grad_norm = self._clip(params)
        else:
            grad_norm = None
        self.scaler.step(optimizer)
        self.scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        logs = {k: sum(m[k] for m in micro_logs) / len(micro_logs) for k in micro_logs[0]}
        if grad_norm is not None:
            logs["grad_norm"] = grad_norm
        return logs
