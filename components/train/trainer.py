"""The training loop of one stage: a recipe, details pushed into helpers.

load checkpoint -> for each step: batch, forward, loss, backward, step,
metrics, maybe checkpoint. Rank 0 writes checkpoints; every rank serves its
metrics. Runs the same under torchrun with gloo (CPU) or nccl (GPU).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from components.errors import ConfigError
from components.storage import ObjectStore
from components.train.checkpoint import CheckpointStore, LatestPointer, read_weights
from components.train.config import TrainConfig
from components.train.data import batch_loader
from components.train.history import TrainingHistory
from components.train.metrics import TrainingMetrics

if TYPE_CHECKING:
    from components.model.loss import Criteria
from components.train.optim import build_optimizer, trainable

log = logging.getLogger(__name__)


@dataclass
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @classmethod
    def init(cls, timeout_s: int = 600) -> Distributed:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
        if world_size > 1 and not dist.is_initialized():
            timeout = timedelta(seconds=timeout_s)
            dist.init_process_group(
                "nccl" if device.type == "cuda" else "gloo",
                store=_round_store(rank, world_size, timeout),
                rank=rank,
                world_size=world_size,
                timeout=timeout,
            )
        return cls(rank, world_size, local_rank, device)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalars over ranks (for logging and metrics only)."""
        if self.world_size == 1 or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist(), strict=True))


def _round_store(rank: int, world_size: int, timeout: timedelta) -> dist.Store:
    """The rendezvous store, namespaced by torchrun's restart round.

    Without the namespace, ranks restarted after a failure could read the previous round's
    addresses of their peers (dead processes) and wait in gloo's full-mesh connect until it
    times out; seen here after a SIGKILLed rank.
    """
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    base = dist.TCPStore(
        os.environ.get("MASTER_ADDR", "127.0.0.1"),
        int(os.environ.get("MASTER_PORT", "29500")),
        world_size,
        is_master=rank == 0 and not agent_hosts,
        timeout=timeout,
    )
    return dist.PrefixStore(f"sam3/round-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", base)


class Trainer:
    def __init__(self, cfg: TrainConfig, store: ObjectStore) -> None:
        self.cfg = cfg
        self.store = store
        self.ckpt = CheckpointStore(store, cfg.prefix, keep=cfg.keep_checkpoints)
        self.history = TrainingHistory(cfg.stage)
        self._gold: list[Any] | None = None

    # -- the recipe ---------------------------------------------------------------
    def train(self) -> LatestPointer:
        from components.model.config import ModelConfig
        from components.model.loss import Criteria, WithLoss, build_criterion

        cfg = self.cfg
        world = Distributed.init(cfg.dist_timeout_s)
        self.seed_everything(cfg.seed + world.rank)
        model = self.build_model().to(world.device)
        resolution = ModelConfig.preset(cfg.size).resolution
        trainable(model, cfg.stage, cfg.optim)
        optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.stage, cfg.steps)
        start = self.restore_or_init(model, optimizer, scheduler)
        self.history = TrainingHistory.resume(self.store, cfg.run_id, cfg.stage, start)
        criterion = Criteria(
            build_criterion(cfg.loss, presence=cfg.presence_head), self.tracker_criterion(), cfg.align_loss
        )
        # video stages: DDP goes around model + loss (components.model.loss.WithLoss), so that it finds the
        # parameters each step uses from the loss itself (clip steps skip the text encoder, image steps the
        # tracker); image stages: some heads (semantic seg, an unused FPN level) never reach the loss, the
        # same set every step, which a static graph learns in its first iteration
        # stage 0 likewise: its model has the backbone's neck levels and pooled text output it does not use
        dynamic = cfg.video or cfg.align
        ddp: nn.Module = WithLoss(model, criterion) if dynamic else model
        if world.world_size > 1:
            ddp = nn.parallel.DistributedDataParallel(
                ddp,
                device_ids=[world.local_rank] if world.device.type == "cuda" else None,
                static_graph=not dynamic,
                find_unused_parameters=dynamic,
            )
        metrics = TrainingMetrics(
            cfg.run_id, cfg.stage, world.rank, world.local_rank if world.device.type == "cuda" else None
        )
        if cfg.metrics_port:
            metrics.serve(cfg.metrics_port + world.local_rank)
        batches = iter(batch_loader(cfg, world.rank, world.world_size, start, resolution))
        autocast = self.autocast(world.device)
        log.info(
            "rank %d/%d: %s stage, steps %d..%d on %s",
            world.rank,
            world.world_size,
            cfg.stage,
            start,
            cfg.steps,
            world.device,
        )
        try:
            for step in range(start, cfg.steps):
                t0 = time.perf_counter()
                losses, wait, samples = self.train_step(ddp, batches, criterion, autocast, world)
                self.apply_update(model, optimizer, scheduler)
                losses = world.mean(main_terms(losses))
                elapsed = time.perf_counter() - t0
                lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
                metrics.observe_step(step + 1, samples, elapsed, wait, losses, lrs)
                self.history.add_step(step + 1, losses, lrs, elapsed)
                if world.rank == 0 and (step % cfg.log_every == 0 or step + 1 == cfg.steps):
                    log_step(step + 1, cfg.steps, losses, elapsed, wait)
                if not all(np.isfinite(v) for v in losses.values()):
                    raise FloatingPointError(f"non-finite loss at step {step + 1}: {losses}")
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                    if world.rank == 0:
                        self.evaluate_in_training(model, step + 1, resolution)
                    self.checkpoint(world, step + 1, model, optimizer, scheduler)
                    metrics.observe_checkpoint()
        finally:
            metrics.close()
        world.barrier()
        final = self.ckpt.latest()
        assert final is not None
        return final

    # -- helpers ----------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The image model; for the video stages the video model (detector + tracker); for stage 0 the
        detector's backbone with an alignment head (components.model.align)."""
        from components.model.align import build_alignment_model
        from components.model.builder import build_model
        from components.model.video import build_video_model

        if self.cfg.align:
            return build_alignment_model(self.cfg.size)
        return build_video_model(self.cfg.size) if self.cfg.video else build_model(self.cfg.size)

    def evaluate_in_training(self, model: nn.Module, step: int, resolution: int) -> None:
        """Stage 0 with ``eval_dataset``: gold recognition AUC now, into the history (the learning curve)."""
        if not (self.cfg.align and self.cfg.eval_dataset):
            return
        from components.evaluate.recognition import recognition_metrics

        if self._gold is None:
            from components.evaluate.stage import image_records

            self._gold = list(image_records(self.cfg.eval_dataset, self.store))
        t0 = time.perf_counter()
        found = recognition_metrics(model, self._gold, resolution)
        self.history.add_evaluation(step, {k: found[k] for k in ("recognition_AUC", "by_length")})
        log.info(
            "step %d: gold recognition AUC %.3f (by words: %s), %.1fs",
            step,
            found["recognition_AUC"],
            " ".join(f"{n}:{v:.3f}" for n, v in found["by_length"].items()),
            time.perf_counter() - t0,
        )

    def tracker_criterion(self) -> nn.Module | None:
        from components.model.clips import TrackerCriterion

        return TrackerCriterion(self.cfg.tracker_loss) if self.cfg.video else None

    def train_step(
        self,
        ddp: nn.Module,
        batches: Iterator[Any],
        criterion: nn.Module | Criteria,
        autocast: Any,
        world: Distributed,
    ) -> tuple[dict[str, float], float, int]:
        """Forward and backward over ``grad_accumulation`` micro-batches; returns (loss terms, data wait,
        samples: images or clips, which differ in number in the joint stage)."""
        from components.model.clips import ClipBatch
        from components.model.loss import forward_and_loss

        accumulation = self.cfg.optim.grad_accumulation
        losses: dict[str, float] = {}
        wait = 0.0
        samples = 0
        for micro in range(accumulation):
            tw = time.perf_counter()
            batch = _to_device(next(batches), world.device)
            wait += time.perf_counter() - tw
            samples += len(batch.clips) if isinstance(batch, ClipBatch) else batch.num_images
            sync = micro == accumulation - 1 or world.world_size == 1  # all-reduce once, on the last one
            with autocast, nullcontext() if sync else ddp.no_sync():  # type: ignore[operator]
                loss, terms = forward_and_loss(ddp, batch, criterion)
            (loss / accumulation).backward()
            for k, v in terms.items():
                losses[k] = losses.get(k, 0.0) + v / accumulation
        return losses, wait, samples

    def apply_update(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> None:
        """After ``train_step``: clip the trainable gradients' norm, step optimizer and schedule, clear."""
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], self.cfg.optim.grad_clip
        )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def restore_or_init(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> int:
        """Resume from latest.json if this run has one; else start from --init (or from scratch)."""
        from components.model.video import load_model_weights

        restored = self.ckpt.restore()
        if restored is not None:
            load_model_weights(model, restored.weights, self.ckpt.store.uri(self.ckpt.latest_key))
            optimizer.load_state_dict(restored.state["optimizer"])
            scheduler.load_state_dict(restored.state["scheduler"])
            self.set_rng(restored.state.get("rng"))
            log.info("resumed from step %d", restored.step)
            return restored.step
        if self.cfg.init:
            load_model_weights(model, read_weights(self.cfg.init, self.store), self.cfg.init)
            log.info("initialised from %s", self.cfg.init)
        return 0

    def checkpoint(
        self,
        world: Distributed,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> None:
        """Rank 0 writes the step (weights, trainer state, config); every rank waits for the commit."""
        if world.rank == 0:
            state = {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": self.get_rng(),
            }
            self.history.save(self.store, self.cfg.run_id)  # before the pointer: never behind a checkpoint
            self.ckpt.save(step, model.state_dict(), state, config=self.cfg.model_dump(mode="json"))
        world.barrier()

    @staticmethod
    def seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    @staticmethod
    def get_rng() -> dict[str, Any]:
        return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}

    @staticmethod
    def set_rng(state: dict[str, Any] | None) -> None:
        if state:
            random.setstate(state["python"])
            np.random.set_state(state["numpy"])
            torch.set_rng_state(state["torch"])

    def autocast(self, device: torch.device) -> Any:
        precision = self.cfg.precision
        if precision == "bf16" and device.type != "cuda":
            raise ConfigError("precision bf16 needs a CUDA device")
        if device.type == "cuda" and precision in ("auto", "bf16"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


def log_step(step: int, steps: int, losses: dict[str, float], elapsed: float, wait: float) -> None:
    terms = " ".join(f"{k}={v:.3f}" for k, v in sorted(losses.items()) if k != "total")
    log.info(
        "step %d/%d loss %.4f (%s) %.2fs/step, data wait %.3fs",
        step,
        steps,
        losses.get("total", float("nan")),
        terms,
        elapsed,
        wait,
    )


def main_terms(losses: dict[str, float]) -> dict[str, float]:
    """The total and the weighted terms (image: the final layer's six, named as in the config; video: the
    tracker's four; stage 0: the alignment terms), for logs and metrics."""
    from components.model.align import ALIGN_TERMS
    from components.model.clips import TRACK_TERMS
    from components.model.loss import MAIN_TERMS

    out = {"total": losses["total"]}
    out.update({key: losses[key] for key in ALIGN_TERMS if key in losses})
    out.update({name: losses[key] for name, key in MAIN_TERMS.items() if key in losses})
    out.update({key: losses[key] for key in TRACK_TERMS if key in losses})
    return out


def _to_device(batch: Any, device: torch.device) -> Any:
    return batch if device.type == "cpu" else batch.to(device, non_blocking=True)
