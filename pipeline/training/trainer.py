"""Training loop: RNNsearch or the RNN encoder-decoder, with exact resume.

``train(cfg)`` is what ``python -m pipeline.train`` runs (Hydra lives in ``pipeline/cli/`` only).
It writes into ``cfg.run_dir``:

    config.yaml        the resolved config
    tokenizer/         the sentencepiece model(s)
    checkpoints/       step-N.pt (last ``train.keep_checkpoints``), last.pt, best.pt (best validation BLEU)
    tensorboard/       scalars, attention heatmaps, example translations
    metrics.jsonl      one JSON object per logged step and per validation

Exact resume: a checkpoint is taken at a step boundary and holds the model,
optimizer, LR schedule, step, epoch, position in the epoch and the RNG states.  The
batch order of an epoch is a pure function of (seed, epoch), so a resumed run
continues with the very batch the interrupted one would have taken next, with the
same dropout masks: its final parameters equal an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from pipeline.config import EflomalConfig, Precision, TrainAppConfig, as_plain_dict
from pipeline.data.batching import Batch, BucketBatchSampler, collate
from pipeline.data.corpus import column_array, release_mapped_pages
from pipeline.data.guided_links import guided_links
from pipeline.data.prepare import PreparedData, prepare
from pipeline.data.tokenizer import PAD_ID
from pipeline.errors import UserError
from pipeline.fast import accelerate
from pipeline.files import write_atomic
from pipeline.model import build_model
from pipeline.model.config import ContextType, Impl
from pipeline.runtime.allocator import keep_freed_memory, release_free_memory
from pipeline.runtime.hardware import resolve_device
from pipeline.runtime.onednn import set_primitive_cache_capacity
from pipeline.runtime.precision import autocast_for, precision_name, use_bf16
from pipeline.training.checkpoint import newest_intact, point_to, prune_steps, save_atomic, state_dict_of, step_path
from pipeline.training.distributed import (
    all_max,
    all_sum,
    barrier,
    close_world,
    from_main,
    gather_to_main,
    init_world,
    shard_of,
    usable_batches,
    world_from_env,
)
from pipeline.training.ema import WeightAverage
from pipeline.training.guided_alignment import guided_alignment_loss
from pipeline.training.manifest import run_manifest
from pipeline.training.resume import check_resumable
from pipeline.training.rng import rng_state, seed_everything, set_rng_state
from pipeline.training.run_lock import RunLock
from pipeline.training.runlog import RunLog
from pipeline.training.schedule import PlateauWarmup
from pipeline.training.signals import StopRequest
from pipeline.training.validation import ValResult, reject_quantized_validation, validate


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # updates taken
    epoch: int = 0  # current epoch (0-based)
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    best_bleu: float = -1.0
    best_step: int = 0
    evals_without_improvement: int = 0
    elapsed_s: float = 0.0  # training wall time over all sessions of this run
    bad_steps_in_row: int = 0
    skipped_steps: int = 0
    last_eval_step: int = -1
    last_eval_bleu: float = -1.0  # BLEU of the validation at last_eval_step (pipeline.average best=N ranks by it)
    finished: str = ""  # why training ended ("" while it can go on)


class Trainer:
    """One training run in ``cfg.run_dir``; :meth:`run` trains until a budget or early stopping ends it."""

    def __init__(self, cfg: TrainAppConfig, data: PreparedData | None = None) -> None:
        self.cfg = cfg
        self.tcfg = cfg.train
        reject_quantized_validation(cfg.decode)
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.world, self.device = init_world(resolve_device(self.tcfg.device), self.tcfg.dist_timeout_minutes)
        self.main = self.world.is_main
        if self.main:
            self._check_run_dir()
        if self.tcfg.threads:
            torch.set_num_threads(self.tcfg.threads)
        if self.tcfg.keep_freed_memory:
            keep_freed_memory()
        set_primitive_cache_capacity(self.tcfg.onednn_cache)  # before the first GEMM
        self.bf16 = use_bf16(self.tcfg.precision, self.device)
        if self.main:  # what train.precision=auto chose here (manifest.json and the summary record it too)
            print(f"precision {precision_name(self.bf16)} (train.precision={Precision(self.tcfg.precision).value})")
        self.config_dict = as_plain_dict(cfg)
        seed_everything(self.tcfg.seed)
        guided = self.tcfg.guided_alignment.links_settings()
        if guided is not None:
            self._check_guidable()
        if self.main:  # rank 0 builds the data cache, the others then read it
            self.data = self._prepared(data, guided)
        barrier(self.world)
        if not self.main:
            self.data = self._prepared(data, guided)
        self.tokenizer = self.data.tokenizer
        model = build_model(cfg.model, len(self.tokenizer.src), len(self.tokenizer.tgt), PAD_ID).to(self.device)
        exclude = list(cfg.model.fast_exclude)
        if guided is not None:
            exclude += self._guided_exclusions()
        # the fast implementations (and their C++ kernels, built now, not inside the first timed step)
        self.implementations = accelerate(model, cfg.model.impl, self.device, exclude)
        self.model = self.implementations.model
        if self.main:
            print(self.implementations.summary(), flush=True)
        self.trained = self._data_parallel(self.model)
        # fused: one kernel over all parameters (CPU and CUDA), ~3x faster than the per-tensor loop
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.tcfg.lr, fused=True)
        self.ema = WeightAverage(self.model, self.tcfg.ema.decay) if self.tcfg.ema.decay > 0 else None
        if self.main:
            self._check_free_space()
        self.schedule = PlateauWarmup(
            self.tcfg.lr, self.tcfg.warmup_steps, self.tcfg.plateau_factor, self.tcfg.plateau_patience, self.tcfg.min_lr
        )
        train = self.data.splits["train"]
        # Batches read only the piece ids: the texts and lengths of each row would be
        # decoded for nothing and map more pages of the Arrow file.
        self.train_ds = train.select_columns(["src_ids", "tgt_ids"])
        self.sampler = BucketBatchSampler(
            column_array(train, "src_len"),
            column_array(train, "tgt_len"),
            cfg.batch.max_tokens,
            cfg.batch.max_sentences,
            seed=self.tcfg.seed,
        )
        self.progress = Progress()
        self.guided_loss: float | None = None  # of the last update
        self._saved_step = 0  # the step of last.pt, once this process has written or resumed from one
        resumed = self._resume()
        if self.main:
            self._write_run_files()
            self.log = RunLog(self.run_dir, self.progress.step if resumed else None)
        barrier(self.world)

    # ------------------------------------------------------------------ setup

    def _data_parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training step calls: ``model`` itself, or its DDP wrapper under torchrun.

        DDP broadcasts rank 0's initial parameters and averages gradients over ranks
        during backward.  Dropout then draws a different stream on each rank.
        """
        if not self.world.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        torch.manual_seed(self.tcfg.seed + self.world.rank)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def _prepared(self, data: PreparedData | None, guided: EflomalConfig | None) -> PreparedData:
        """The prepared corpus (and, with guided alignment, its training links), built or given."""
        cfg = self.cfg
        if data is None:
            return prepare(cfg.data, cfg.tokenizer, cfg.batch, guided)
        if guided is not None and data.guided is None:
            data.guided, _ = guided_links(data.splits["train"], guided, cfg.data.cache_dir)
        return data

    def _check_guidable(self) -> None:
        """Before any work: guided alignment needs an attention model and the reference decoder."""
        if ContextType(self.cfg.model.context) is ContextType.fixed:
            raise UserError(
                f"train.guided_alignment.weight={self.tcfg.guided_alignment.weight} guides attention, and "
                f"model={self.cfg.model.name} has none; use model=bahdanau or set the weight to 0"
            )
        if Impl(self.cfg.model.impl) is Impl.fast:
            raise UserError(
                "model.impl=fast needs the fast decoder, and guided alignment needs attention gradients, which it "
                "does not give; use model.impl=auto (the fast encoder and loss, the reference decoder)"
            )

    def _guided_exclusions(self) -> list[str]:
        """Fast decoders that treat the attention weights as outputs without a gradient; one line says so."""
        if self.main:
            print("guided alignment: the teacher-forced decoder runs as the reference (it needs attention gradients)")
        return ["recurrence_decoder", "fused_luong_decoder"]

    def _check_run_dir(self) -> None:
        try:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write_test"
            probe.write_bytes(b"x" * 4096)
            probe.unlink()
        except OSError as err:
            raise UserError(
                f"run_dir {self.run_dir} is not writable ({err.strerror}); choose another run_dir"
            ) from None

    def _check_free_space(self) -> None:
        """Refuse to start when the run_dir's disk cannot hold the checkpoints this run keeps.

        A checkpoint holds the parameters and Adam's two moments (3 x 4 bytes per
        parameter, 4 more with the EMA weights); the run keeps ``keep_checkpoints`` step
        checkpoints, best.pt, and writes one temporary copy while saving.
        """
        copies = 3 + (self.ema is not None)
        per_checkpoint = copies * 4 * self.model.num_parameters() + (1 << 20)
        needed = (self.tcfg.keep_checkpoints + 2) * per_checkpoint
        free = shutil.disk_usage(self.run_dir).free
        if free < needed:
            mb = 1 << 20
            raise UserError(
                f"run_dir {self.run_dir}: only {free // mb} MB free on its disk, but this run's checkpoints need "
                f"about {needed // mb} MB ({self.tcfg.keep_checkpoints} kept + best + one being written, "
                f"{per_checkpoint // mb} MB each); free some space, lower train.keep_checkpoints or choose another "
                "run_dir"
            )

    def _write_run_files(self) -> None:
        self.tokenizer.save(self.run_dir / "tokenizer")
        write_atomic(
            self.run_dir / "config.yaml", yaml.safe_dump(self.config_dict, sort_keys=False, allow_unicode=True)
        )
        manifest = run_manifest(self.device, self.data.fingerprint, self.tcfg.seed, self.bf16, self.implementations)
        write_atomic(self.run_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")

    def _resume(self) -> bool:
        found = newest_intact(self.ckpt_dir)
        if found is None:
            return False
        path, ckpt = found
        check_resumable(ckpt, {"config": self.config_dict, "tokenizer": self.tokenizer.state()}, path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.progress = Progress(**ckpt["progress"])
        self._saved_step = self.progress.step
        self._restore_rng(ckpt["rng"])
        if self.ema is not None:
            if "ema" not in ckpt:
                raise UserError(
                    f"{path} was trained without train.ema.decay, so it has no weight average to continue; "
                    "resume without train.ema.decay or choose a new run_dir"
                )
            self.ema.load_state_dict(ckpt["ema"])
        if self.progress.finished and not self.progress.finished.startswith("early") and self._budget_left():
            self.progress.finished = ""  # a larger budget was given: go on
        if self.main:
            print(
                f"resuming from {path} at step {self.progress.step} (epoch {self.progress.epoch + 1}, "
                f"batch {self.progress.batch_in_epoch})",
                flush=True,
            )
        return True

    def _restore_rng(self, saved: dict | list) -> None:
        """Each rank takes back its own random streams (a checkpoint holds one per rank).

        Resuming with another world size keeps data order, parameters, optimizer and
        schedule, but the dropout streams of ranks that did not exist are seeded afresh
        from (seed, rank, step): exact resume needs the same world size.
        """
        states = saved if isinstance(saved, list) else [saved]
        if len(states) == self.world.size:
            set_rng_state(states[self.world.rank])
        else:
            set_rng_state(states[0])
            if self.world.distributed:
                torch.manual_seed(self.tcfg.seed + 1_000_003 * self.progress.step + self.world.rank)

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> Path | None:
        """Checkpoint at the current step boundary; last.pt then points to it.

        Collective under torchrun: every rank hands rank 0 its random state, rank 0 writes.
        """
        p = self.progress
        rngs = gather_to_main(rng_state(), self.world)
        if not self.main:
            return None
        payload = {
            "model": state_dict_of(self.model),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "progress": asdict(p),
            "rng": rngs if self.world.distributed else rngs[0],
            "config": self.config_dict,
            "tokenizer": self.tokenizer.state(),
            "step": p.step,
            "params": self.model.num_parameters(),
            "decode_weights": "ema" if self._validates_ema else "model",
        }
        if self.ema is not None:
            payload["ema"] = self.ema.state_dict()
        path = step_path(self.ckpt_dir, p.step)
        try:
            save_atomic(payload, path)
        except OSError as err:
            last = self.ckpt_dir / "last.pt"
            kept = f"{last} (step {self._saved_step}) is intact" if last.is_file() else "no checkpoint was written yet"
            raise UserError(
                f"could not write checkpoint {path} ({err.strerror or err}); {kept}; free space on that disk "
                "(or lower train.keep_checkpoints) and run the same command again to resume from it"
            ) from None
        self._saved_step = p.step
        point_to(path, self.ckpt_dir / "last.pt")
        if p.best_step == p.step and p.best_bleu >= 0:
            point_to(path, self.ckpt_dir / "best.pt")
        prune_steps(self.ckpt_dir, self.tcfg.keep_checkpoints)
        return path

    # ------------------------------------------------------------------ budgets

    def _budget_left(self) -> bool:
        t, p = self.tcfg, self.progress
        if t.max_steps is not None and p.step >= t.max_steps:
            return False
        if t.max_epochs is not None and p.epoch >= t.max_epochs:
            return False
        return not (t.max_minutes is not None and p.elapsed_s >= 60.0 * t.max_minutes)

    def _budget_reason(self) -> str:
        t, p = self.tcfg, self.progress
        if t.max_steps is not None and p.step >= t.max_steps:
            return f"max_steps={t.max_steps} reached"
        if t.max_epochs is not None and p.epoch >= t.max_epochs:
            return f"max_epochs={t.max_epochs} reached"
        return f"max_minutes={t.max_minutes} reached"

    # ------------------------------------------------------------------ one update

    def _loss_sum(self, batch: Batch, guide: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(summed label-smoothed loss over the batch's real target tokens, summed guided-alignment
        loss or None); the objective is the first plus ``train.guided_alignment.weight`` x the second."""
        with autocast_for(self.device, self.bf16):
            loss_sum, attn = self.trained(
                batch.src, batch.src_lens, batch.tgt_in, batch.tgt_out, label_smoothing=self.tcfg.label_smoothing
            )
        return loss_sum, None if guide is None else guided_alignment_loss(attn, guide)

    def _update(self, batches: list) -> tuple[float, float, int]:
        """One optimizer update over this rank's batches: (mean token loss, grad norm, target tokens of all ranks).

        The loss is the token-weighted mean over every batch of the update on every rank,
        so N ranks x k batches take the same step as one process accumulating N*k batches.
        (DDP averages gradients over ranks, hence the factor ``world.size``.)
        """
        self.trained.train()
        self.optimizer.zero_grad(set_to_none=True)
        local_tok = sum(b.n_tgt_tokens for b, _ in batches)
        n_tok = int(all_sum([float(local_tok)], self.world, self.device)[0])
        scale = self.world.size / max(n_tok, 1)
        total, guided_total, weight = 0.0, 0.0, self.tcfg.guided_alignment.weight
        for i, (batch, guide) in enumerate(batches):
            sync = i == len(batches) - 1 or not self.world.distributed
            with contextlib.nullcontext() if sync else self.trained.no_sync():
                loss_sum, guided_sum = self._loss_sum(batch, guide)
                objective = loss_sum if guided_sum is None else loss_sum + weight * guided_sum
                (objective * scale).backward()
            total += float(loss_sum.detach())
            guided_total += 0.0 if guided_sum is None else float(guided_sum.detach())
        total, guided_total = (v / max(n_tok, 1) for v in all_sum([total, guided_total], self.world, self.device))
        self.guided_loss = guided_total if weight > 0 else None
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg.clip_norm))
        lr = self.schedule.lr(self.progress.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if math.isfinite(total) and math.isfinite(grad_norm):
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.progress.step + 1)
            self.progress.bad_steps_in_row = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.progress.bad_steps_in_row += 1
            self.progress.skipped_steps += 1
            if self.progress.bad_steps_in_row >= self.tcfg.max_bad_steps:
                raise UserError(
                    f"{self.progress.bad_steps_in_row} non-finite losses/gradients in a row at step "
                    f"{self.progress.step + 1}; lower train.lr or train.clip_norm, or try train.precision=fp32 "
                    f"(limit: train.max_bad_steps={self.tcfg.max_bad_steps})"
                )
        return total, grad_norm, n_tok

    def _batch(self, idx: np.ndarray) -> tuple[Batch, torch.Tensor | None]:
        """The padded batch of these train rows, and their guided attention targets (or None)."""
        ex = self.train_ds[idx.tolist()]
        # A batch's rows lie all over the file; unreleased, their pages (about 40 MB a
        # batch at 5M pairs) would pile up in RSS until the whole file is mapped.
        release_mapped_pages(self.train_ds)
        batch = collate(ex["src_ids"], ex["tgt_ids"], idx.tolist())
        guide = None
        if self.data.guided is not None and self.tcfg.guided_alignment.weight > 0:
            guide = self.data.guided.targets(idx.tolist(), batch.src.size(1), batch.tgt_out.size(1))
            guide = guide.to(self.device, non_blocking=True)
        if self.device.type == "cuda":  # page-locked memory lets the copy overlap with compute
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True), guide

    # ------------------------------------------------------------------ validation

    def _validate(self, scheduled: bool) -> ValResult:
        p = self.progress
        if self.tcfg.keep_freed_memory and self.device.type == "cpu":
            release_free_memory()  # decoding's blocks would otherwise come on top of training's kept ones
        with self.ema.applied() if self._validates_ema else contextlib.nullcontext():
            res = self._validation()
        p.last_eval_step, p.last_eval_bleu = p.step, res.bleu
        improved = res.bleu > p.best_bleu
        if improved:
            p.best_bleu, p.best_step, p.evals_without_improvement = res.bleu, p.step, 0
        elif scheduled:
            p.evals_without_improvement += 1
        if scheduled and self.schedule.observe(res.bleu):
            tqdm.write(
                f"step {p.step}: no BLEU gain for {self.tcfg.plateau_patience} validations; "
                f"lr -> {self.schedule.peak:.2e}"
            )
        self._report_validation(res)
        return res

    @property
    def _validates_ema(self) -> bool:
        """Validation (and so best.pt, the schedule and early stopping) scores the EMA weights."""
        return self.ema is not None and self.tcfg.ema.validate

    def _validation(self) -> ValResult:
        return validate(
            self.model,
            self.data.splits["val"],
            self.tokenizer,
            self.cfg.decode,
            self.cfg.batch.max_tokens,
            self.tcfg.eval_max_sentences,
            self.tcfg.examples_logged,
            self.device,
            self.bf16,
            self.implementations.top_log_probs,
        )

    def _report_validation(self, res: ValResult) -> None:
        p = self.progress
        values = {
            **res.scalars(),
            "best_bleu": p.best_bleu,
            "best_step": p.best_step,
            "epoch": p.epoch + 1,
            "elapsed_min": p.elapsed_s / 60.0,
        }
        if p.last_eval_step >= 0 and not getattr(self, "_signatures_logged", False):
            values["signatures"] = res.signatures
            self.log.tb.add_text("val/signatures", "  \n".join(f"{k}: {v}" for k, v in res.signatures.items()), 0)
            self._signatures_logged = True
        values["examples"] = res.examples
        self.log.record("val", p.step, values, tb_prefix="val")
        self.log.tb.add_text(
            "val/examples",
            "  \n".join(f"SRC: {e['src']}  \nREF: {e['ref']}  \nHYP: {e['hyp']}  \n" for e in res.examples),
            p.step,
        )
        if res.heatmap is not None:
            from pipeline.reporting.plots import heatmap_figure  # matplotlib takes ~1 s to import: not at every start

            src, hyp, w = res.heatmap
            fig = heatmap_figure(src, hyp, w, f"val sentence 0, step {p.step}")
            self.log.tb.add_figure("val/attention", fig, p.step)
        attn = (
            "" if res.attn_entropy is None else f" attn-entropy {res.attn_entropy:.2f} eos-mass {res.attn_eos_mass:.2f}"
        )
        tqdm.write(
            f"step {p.step} epoch {p.epoch + 1}: val loss {res.loss:.3f} ppl {res.ppl:.1f} "
            f"BLEU {res.bleu:.2f} chrF {res.chrf:.1f} (best {p.best_bleu:.2f} @ {p.best_step}){attn}"
        )
        for e in res.examples[:1]:
            tqdm.write(f"  SRC {e['src']}\n  REF {e['ref']}\n  HYP {e['hyp']}")

    # ------------------------------------------------------------------ loop

    def run(self) -> dict:
        """Train until a budget, early stopping or a stop signal; returns a summary dict."""
        p, t = self.progress, self.tcfg
        if p.finished:
            self._say(f"run in {self.run_dir} already finished ({p.finished}); nothing to do")
            return self.summary()
        per_update = self.world.size * t.accum_steps
        self._say(
            f"training {self.cfg.model.name} ({self.model.num_parameters():,} parameters) on {self.device}, "
            f"{len(self.train_ds):,} pairs, {len(self.sampler.batches(p.epoch))} batches/epoch; effective batch "
            f"{per_update} x {self.cfg.batch.max_tokens} tokens ({self.world.size} rank(s) x {t.accum_steps} "
            "accumulated)"
        )
        # disable=None: tqdm switches itself off when stderr is not a terminal (log files stay readable)
        bar = tqdm(
            total=t.max_steps,
            initial=p.step,
            disable=None if t.progress and self.main else True,
            unit="step",
            dynamic_ncols=True,
        )
        window_tok, window_t0 = 0, time.perf_counter()
        with StopRequest() as stop:
            while self._budget_left() and not p.finished:
                batches = self.sampler.batches(p.epoch)
                n_usable = usable_batches(len(batches), self.world)
                while p.batch_in_epoch < n_usable and self._budget_left():
                    t0 = time.perf_counter()
                    group = batches[p.batch_in_epoch : min(p.batch_in_epoch + per_update, n_usable)]
                    loss, gnorm, n_tok = self._update([self._batch(i) for i in shard_of(group, self.world)])
                    p.batch_in_epoch += len(group)
                    p.step += 1
                    window_tok += n_tok
                    bar.update(1)
                    if p.step % t.log_every == 0 and self.main:  # the other ranks never read the window
                        tok_s = window_tok / max(time.perf_counter() - window_t0, 1e-9)
                        self._log_train(loss, gnorm, tok_s, n_tok)
                        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}")
                        window_tok, window_t0 = 0, time.perf_counter()
                    p.elapsed_s += time.perf_counter() - t0
                    if self._after_step(stop):
                        bar.close()
                        return self.summary()
                if p.batch_in_epoch >= n_usable:
                    p.epoch, p.batch_in_epoch = p.epoch + 1, 0
        bar.close()
        if not p.finished:
            p.finished = self._budget_reason()
        if p.last_eval_step != p.step:
            self._timed(lambda: self._validate_on_main(scheduled=False))
        self.save()
        self._say(
            f"finished: {p.finished}; best val BLEU {p.best_bleu:.2f} at step {p.best_step}; "
            f"checkpoints in {self.ckpt_dir}"
        )
        if self.main:
            self.log.close()
        return self.summary()

    def _say(self, message: str) -> None:
        if self.main:
            print(message, flush=True)

    def _log_train(self, loss: float, gnorm: float, tok_s: float, n_tok: int) -> None:
        p = self.progress
        values = {
            "loss": loss,
            "ppl": math.exp(min(loss, 50.0)),
            "lr": self.schedule.lr(p.step),
            "grad_norm": gnorm,
            "tokens_per_s": tok_s,
            "tokens_per_update": n_tok,
            "epoch": p.epoch + 1,
            "skipped_steps": p.skipped_steps,
        }
        if self.guided_loss is not None:  # mean guided-alignment cross-entropy per target token, unweighted
            values["guided_loss"] = self.guided_loss
        self.log.record("train", p.step, values, tb_prefix="train")

    def _timed(self, fn) -> None:
        t0 = time.perf_counter()
        fn()
        self.progress.elapsed_s += time.perf_counter() - t0

    def _validate_on_main(self, scheduled: bool) -> None:
        """Rank 0 validates; then every rank takes its progress and schedule (best BLEU, lr, early stop)."""
        if self.main:
            self._validate(scheduled)
        state = from_main((asdict(self.progress), self.schedule.state_dict()), self.world)
        if not self.main:
            for key, value in state[0].items():  # in place: the training loop holds this object
                setattr(self.progress, key, value)
            self.schedule.load_state_dict(state[1])

    def _after_step(self, stop: StopRequest) -> bool:
        """Validation, early stopping, periodic checkpoints and stop signals; True to return now.

        Under torchrun the ranks agree first: on rank 0's clock (budgets) and on whether
        any rank was asked to stop, so that all take the same branch.
        """
        p, t = self.progress, self.tcfg  # progress is updated in place on every rank
        clock = p.elapsed_s if self.main else 0.0
        p.elapsed_s, signalled = all_max([clock, float(stop.signal or 0)], self.world, self.device)
        saved = False
        if p.step % t.eval_every == 0:
            self._timed(lambda: self._validate_on_main(scheduled=True))
            if t.early_stop_patience and p.evals_without_improvement >= t.early_stop_patience:
                p.finished = f"early stopping: no BLEU gain in {p.evals_without_improvement} validations"
            self.save()
            saved = True
        elif t.checkpoint_every and p.step % t.checkpoint_every == 0:
            self.save()
            saved = True
        if signalled:
            if not saved:
                self.save()
            name = signal.Signals(int(signalled)).name
            self._say(f"\n{name} received: checkpoint saved at step {p.step}; run the same command again to resume")
            if self.main:
                self.log.close()
            return True
        return False

    def summary(self) -> dict:
        p = self.progress
        return {
            "run_dir": str(self.run_dir),
            "model": self.cfg.model.name,
            "params": self.model.num_parameters(),
            "step": p.step,
            "best_bleu": p.best_bleu,
            "best_step": p.best_step,
            "train_minutes": p.elapsed_s / 60.0,
            "precision": precision_name(self.bf16),
            "finished": p.finished,
        }


def train(cfg: TrainAppConfig, data: PreparedData | None = None) -> dict:
    """Train (or resume) the run described by ``cfg``; returns a summary.

    Under ``torchrun`` every rank calls this; the process group ends with the run.  The main
    process (rank 0) holds the run directory's lock (:mod:`pipeline.training.run_lock`) from
    before its first write to the end, so a second writer stops with one line.
    """
    main = world_from_env().is_main
    with RunLock(cfg.run_dir, "train") if main else contextlib.nullcontext():
        try:
            return Trainer(cfg, data).run()
        finally:
            close_world()
