"""The pretraining loop: masked student, point decoder, 3D-to-2D head, frozen multi-view teacher.

Runs the same in one process and under ``torchrun --nproc_per_node=K`` (DDP; gloo on CPU,
nccl on GPU). ``optim.batch_size`` is the *global* batch; every process takes its slice of
the same global draw (see :mod:`mv2d3d.pretrain.data`) and BatchNorm statistics are
synchronised, so K processes x batch b follow the same trajectory as 1 process x batch K*b
(up to floating-point summation order).

Reproducibility and resuming: all randomness is a function of ``(run.seed, step)`` (cloud
order per epoch, point subsets, masks) or is re-seeded from it at every step (dropout, drop
path), so a run resumed from a checkpoint continues exactly where an uninterrupted run would
be. The checkpoint holds model, optimiser, schedule position, RNG states and data position,
is written with ``torch.save`` to a temp file then renamed, and reads back with
``torch.load(weights_only=True)``.

Output folder::

    out/recipe.json             the resolved recipe
    out/metrics.jsonl           one JSON object per logged step
    out/checkpoints/last.pt     the latest checkpoint (every run.save_every steps and at epoch ends)
    out/teacher_cache/          cached teacher features (when teacher.cache is on)
    out/views.png               a grid of rendered views of the first clouds
    out/encoder/                the student encoder, saved with save_pretrained at the end
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..pretrain.config import PretrainConfig
from .distributed import DistInfo, all_reduce_mean, barrier, cleanup, default_device, init_distributed

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mv2d3d-pretrain-checkpoint/1"


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns (on every process).

    Attributes:
        out_dir: the run folder.
        step: global steps done.
        total_steps: steps of the full schedule.
        last_loss: the last step's loss (mean over processes).
        encoder_dir: folder of the saved encoder (None on non-main processes).
    """

    out_dir: Path
    step: int
    total_steps: int
    last_loss: float
    encoder_dir: Optional[Path]


def lr_at(step: int, total: int, warmup: int, base: float, minimum: float) -> float:
    """Linear warmup to ``base`` over ``warmup`` steps, then cosine decay to ``minimum``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return minimum + 0.5 * (base - minimum) * (1.0 + math.cos(math.pi * min(1.0, t)))


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on biases, norms, and learned tokens/embeddings (1-D or tagged params)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("token", "_embed", "cls_pos")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".incomplete.{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> Dict[str, Any]:
    state: Dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _comparable(cfg: Dict[str, Any]) -> Dict[str, Any]:
    # parse first so fields added to the recipe format since the checkpoint take their defaults
    from ..pretrain.config import recipe_from_dict

    d = recipe_from_dict(json.loads(json.dumps(cfg)), source="checkpoint config").to_dict()
    # settings that may change between an interrupted run and its resumption
    d.get("heads", {}).pop("checkpoint_2d", None)  # same maths, different memory/compute trade
    d.pop("run", None)
    d.pop("description", None)
    d.get("teacher", {}).pop("cache_dir", None)
    d.get("teacher", {}).pop("batch_size", None)
    return d


def save_encoder(encoder: nn.Module, out_dir: Path, **card: Any) -> Path:
    """``encoder.save_pretrained(out_dir, **card)``: config.json + model.safetensors + model card."""
    return Path(encoder.save_pretrained(out_dir, **card))


class Pretrainer:
    """One pretraining run; see :func:`pretrain` for the arguments."""

    def __init__(
        self,
        cfg: PretrainConfig,
        out_dir: Union[str, Path],
        *,
        device: Optional[str] = None,
        max_steps: Optional[int] = None,
        resume: bool = False,
        progress: bool = True,
        command: Optional[str] = None,
    ):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.max_steps = max_steps
        self.resume = resume
        self.progress = progress
        self.command = command
        self.info: DistInfo = init_distributed(device)
        self.device = default_device(device, self.info)

    # -- setup ------------------------------------------------------------------------------
    def _setup(self) -> None:
        from ..pretrain.data import BatchPlan, fingerprint, load_pretrain_points
        from ..pretrain.model import PretrainModel, sync_batchnorm

        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.run.seed)
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = self.out / "recipe.json.incomplete"
            tmp.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            tmp.replace(self.out / "recipe.json")
        self.points = torch.from_numpy(load_pretrain_points(cfg.data))
        logger.info("pretraining data: %d clouds x %d points (%s)", *self.points.shape[:2], cfg.data.source)
        self.plan = BatchPlan(len(self.points), cfg.optim.batch_size, cfg.run.seed, info.world_size, info.rank)
        self.total_steps = cfg.optim.epochs * self.plan.steps_per_epoch
        self.warmup = int(round(cfg.optim.warmup_epochs * self.plan.steps_per_epoch))

        self.view_teacher = None
        self.cached = None
        grid, tdim, nviews = None, 0, len(cfg.render.views)
        if cfg.loss.w2d > 0 or cfg.loss.w_global > 0:
            from ..pretrain.teacher import ViewTeacher, build_feature_cache, cache_key

            vt = ViewTeacher(cfg.teacher, cfg.render).to(self.device)
            grid, tdim = vt.teacher.grid, vt.teacher.dim
            logger.info("teacher %s (%s): %d views x %dx%d patches x %d channels", cfg.teacher.model, cfg.teacher.weights, nviews, grid[0], grid[1], tdim)
            if info.is_main:
                from ..pretrain.render import render_depth, save_view_grid

                rc = cfg.render
                save_view_grid(render_depth(self.points[:4], rc.views, rc.resolution, margin=rc.margin, fill_iters=rc.fill_iters, point_size=rc.point_size), self.out / "views.png")
            if cfg.teacher.cache:
                cache_dir = Path(cfg.teacher.cache_dir) if cfg.teacher.cache_dir else self.out / "teacher_cache"
                key = cache_key(fingerprint(self.points.numpy()), cfg.teacher, cfg.render)
                # the main process fills the cache, the others then read it
                if info.is_main:
                    self.cached = build_feature_cache(self.points.numpy(), vt, cache_dir, key, device=self.device, progress=self.progress)
                barrier(info)
                if not info.is_main:
                    self.cached = build_feature_cache(self.points.numpy(), vt, cache_dir, key, device=self.device, progress=False)
                del vt  # the frozen network is not needed any more
            else:
                self.view_teacher = vt

        model = PretrainModel(cfg, grid, tdim, nviews).to(self.device)
        if info.enabled:
            sync_batchnorm(model)
        self.model = model
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas))
        self.scaler = None
        if cfg.optim.amp == "fp16":
            if self.device.type != "cuda":
                raise ConfigError("optim.amp='fp16' needs a CUDA device; use 'bf16' on CPU.")
            self.scaler = torch.amp.GradScaler("cuda")
        self.step = 0
        if self.resume:
            self._load_checkpoint()
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            find_unused = cfg.loss.w2d <= 0 and model.head2d is not None
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp: nn.Module = DDP(model, device_ids=ids, find_unused_parameters=find_unused)
        else:
            self.ddp = model

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def _save_checkpoint(self) -> None:
        if not self.info.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": self.step, "total_steps": self.total_steps, "warmup_steps": self.warmup},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": _rng_state(),
            "data": {"epoch": self.step // self.plan.steps_per_epoch, "position": self.step % self.plan.steps_per_epoch, "global_batch": self.plan.global_batch},
            "config": self.cfg.to_dict(),
        }
        _atomic_torch_save(state, self.checkpoint_path)

    def _load_checkpoint(self) -> None:
        path = self.checkpoint_path
        if not path.is_file():
            logger.info("--resume: no checkpoint at %s, starting from step 0", path)
            return
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConfigError(f"Cannot read checkpoint {path}: {e}. Delete it to start over.") from e
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path} is not an mv2d3d pretraining checkpoint ({state.get('format')!r}).")
        if _comparable(state["config"]) != _comparable(self.cfg.to_dict()):
            raise ConfigError(
                f"{path} was written by a different recipe (only the 'run' section may change on resume). "
                "Resume with the recipe in recipe.json, or use a new --out folder."
            )
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.step = int(state["step"])
        logger.info("resumed from %s at step %d", path, self.step)
        if self.info.is_main:
            self._truncate_metrics(self.step)

    def _truncate_metrics(self, step: int) -> None:
        # an interrupted run may have logged steps after its last checkpoint: drop them
        log = self.out / "metrics.jsonl"
        if not log.is_file():
            return
        keep = [ln for ln in log.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        tmp = log.with_name(log.name + ".incomplete")
        tmp.write_text("".join(ln + "\n" for ln in keep))
        tmp.replace(log)

    # -- one step ---------------------------------------------------------------------------
    def _batch(self, step: int):
        cfg = self.cfg
        idx, sub, noise = self.plan.draw(step, self.points.shape[1], cfg.data.sample_points, cfg.encoder.num_groups)
        idx_t = torch.from_numpy(idx)
        full = self.points[idx_t]
        pts = full.gather(1, sub.unsqueeze(-1).expand(-1, -1, 3)).to(self.device)
        maps = pooled = None
        if self.cached is not None:
            maps = self.cached[0][idx_t].to(self.device)  # float16 as cached; the loss upcasts one view at a time
            pooled = self.cached[1][idx_t].to(self.device, torch.float32)
        elif self.view_teacher is not None:
            maps, pooled = self.view_teacher(full.to(self.device))
        return pts, noise.to(self.device), maps, pooled

    def train_step(self, step: int) -> Dict[str, float]:
        cfg = self.cfg
        # dropout / drop path draw from the global generator: re-seed per step (and process)
        torch.manual_seed(cfg.run.seed * 1_000_003 + step * 131 + self.info.rank)
        lr = lr_at(step, self.total_steps, self.warmup, cfg.optim.lr, cfg.optim.min_lr)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        pts, noise, maps, pooled = self._batch(step)
        self.ddp.train()
        amp = cfg.optim.amp
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype, enabled=amp != "none"):
            loss, parts = self.ddp(pts, noise, maps, pooled)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip) if cfg.optim.grad_clip > 0 else torch.zeros(())
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        vals = torch.stack([loss.detach().float(), parts["chamfer"].detach().float(), parts["loss2d"].detach().float(), parts["global"].detach().float(), gnorm.detach().float().cpu().to(loss.device)])
        vals = all_reduce_mean(vals, self.info).tolist()
        return {"lr": lr, "loss": vals[0], "chamfer": vals[1], "loss2d": vals[2], "global": vals[3], "grad_norm": vals[4]}

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> PretrainResult:
        from tqdm.auto import tqdm

        self._setup()
        cfg, info = self.cfg, self.info
        stop = self.total_steps if self.max_steps is None else min(self.total_steps, self.max_steps)
        spe = self.plan.steps_per_epoch
        log_f = open(self.out / "metrics.jsonl", "a") if info.is_main else None
        bar = tqdm(total=stop, initial=min(self.step, stop), desc="pretrain", unit="step", disable=not (self.progress and info.is_main), dynamic_ncols=True)
        last = float("nan")
        try:
            while self.step < stop:
                t0 = time.perf_counter()
                m = self.train_step(self.step)
                self.step += 1
                last = m["loss"]
                if not math.isfinite(last):
                    raise FloatingPointError(f"loss became {last} at step {self.step}; lower optim.lr or turn amp off.")
                if log_f is not None and (self.step % cfg.run.log_every == 0 or self.step == stop):
                    rec = {"step": self.step, "epoch": (self.step - 1) // spe, **{k: round(v, 6) for k, v in m.items()}, "time": round(time.perf_counter() - t0, 4)}
                    log_f.write(json.dumps(rec) + "\n")
                    log_f.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{last:.4f}", epoch=(self.step - 1) // spe)
                if self.step % cfg.run.save_every == 0 or self.step % spe == 0 or self.step == stop:
                    self._save_checkpoint()
                    barrier(info)
        finally:
            bar.close()
            if log_f is not None:
                log_f.close()
        enc_dir = None
        if info.is_main:
            from ..models.encoder import PointEncoder

            enc = PointEncoder(cfg.encoder)
            enc.load_state_dict_strict(self.model.encoder.state_dict(), source="pretrained student")
            enc.eval()
            notes = f"Pretrained for {self.step} of {self.total_steps} steps with recipe {cfg.name!r} ({cfg.description})"
            enc_dir = save_encoder(enc, self.out / "encoder", recipe=cfg.name, command=self.command, notes=notes)
            logger.info("saved the student encoder to %s", enc_dir)
        barrier(info)
        return PretrainResult(self.out, self.step, self.total_steps, last, enc_dir)


def pretrain(
    cfg: Union[PretrainConfig, str, Path],
    out_dir: Union[str, Path],
    *,
    device: Optional[str] = None,
    max_steps: Optional[int] = None,
    resume: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = True,
    command: Optional[str] = None,
) -> PretrainResult:
    """Pretrain a student encoder by masked 3D reconstruction and multi-view 2D distillation.

    Args:
        cfg: a :class:`PretrainConfig`, a shipped recipe name or a recipe file path.
        out_dir: run folder (see the module docstring for its contents).
        device: ``cpu``, ``cuda``, ``cuda:1`` ... (default: this process's GPU if any, else CPU).
        max_steps: stop once this many global steps are done (the schedule still spans the
            whole recipe, so a later ``resume`` continues it unchanged).
        resume: continue from ``out_dir/checkpoints/last.pt`` if it exists.
        overrides: ``section.field=value`` strings applied to the recipe.
        progress: show a tqdm bar.
        command: the command line, recorded in the model card.

    Returns:
        :class:`PretrainResult`.

    Raises:
        ConfigError: bad recipe, override or checkpoint.
    """
    from ..pretrain.config import apply_overrides, load_recipe

    if not isinstance(cfg, PretrainConfig):
        cfg = load_recipe(cfg)
    if overrides:
        cfg = apply_overrides(cfg, list(overrides))
    trainer = Pretrainer(cfg, out_dir, device=device, max_steps=max_steps, resume=resume, progress=progress, command=command)
    try:
        return trainer.run()
    finally:
        cleanup(trainer.info)
