"""Fine-tuning a pretrained encoder into a classifier on a user's data.

:func:`finetune` trains a :class:`~mv2d3d.models.PointClassifier` (the pretrained encoder
loaded strictly, a new head) on a class-per-folder tree or a standard benchmark, holds out a
validation split, keeps the weights of the epoch with the best validation accuracy (never
the test split), and writes a ``save_pretrained`` folder whose model card records the data,
the command and the measured accuracies.

* Linear probe (``freeze_encoder=True``): encoder frozen in eval mode, a linear head.
* Resume: every epoch ends with an atomic trainer checkpoint (``<out>.trainer/last.pt``:
  weights, optimizer, schedule, best-so-far, history), loaded with ``weights_only=True``.
* Several processes: run under ``torchrun``; each rank trains on its shard of every epoch
  (DistributedDataParallel, gloo on CPU / nccl on CUDA), validation is sharded and summed.

Shapes:
    B: batch size, N: points, L: classes.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..config import ClassifierConfig
from ..errors import ConfigError, DatasetError
from ..models import PointClassifier
from . import distributed as D
from .evaluate import accuracies, confusion_matrix

logger = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Options of :func:`finetune` (the ``mv2d3d finetune`` flags, one for one).

    Args:
        data: a class-per-folder tree, or the root of a standard data set (``dataset``).
        model: zoo name, local folder or Hub repo id of the pretrained encoder (or of a
            fine-tuned classifier with the same classes, to continue training it).
        out: output folder (``save_pretrained`` layout).
        dataset: ``None`` for a folder tree, else a name of :data:`mv2d3d.data.STANDARD_DATASETS`.
        epochs, batch_size, lr, weight_decay: the optimisation (AdamW, cosine schedule
            with ``warmup_epochs`` of linear warm-up, gradient norm clipped at 10).
        freeze_encoder: linear probe: the encoder stays frozen, the head is one linear layer.
        label_smoothing: of the cross-entropy.
        num_points: points sampled per file (None: the encoder's ``num_points``).
        val_fraction: share of each class held out for validation (when the data has no
            ``val/`` folder); 0 trains on everything and keeps the last epoch.
        augment: ``none``, ``scale_translate``, ``rotate`` or ``full`` (see
            :func:`mv2d3d.data.transforms.default_train_transform`); ``up_axis`` for rotations.
        seed: seeds the split, the sampling, the augmentation, the head and the shuffling.
        workers: data-loader worker processes.
        device: ``cpu``, ``cuda``, ``cuda:1``, ... (None: CUDA if available).
        resume: continue from ``<out>.trainer/last.pt`` if it exists.
        pretrained: False starts from a randomly initialised encoder (baseline runs).
        cache_dir: cache of sampled clouds (see :class:`mv2d3d.data.datasets.PointCache`).
        recalibrate_bn: before each validation, measure the BatchNorm statistics exactly
            on the (un-augmented) training samples instead of trusting their running
            averages. With few optimizer steps the running averages still remember their
            initial values and the model collapses in eval mode (tests' 3-class folder of
            60 procedural clouds, seeds 1/2/3, 2 epochs: val accuracy 0.40/0.67/0.47 without,
            0.93/0.93/0.80 with). None (auto): on when an epoch has fewer than 100 steps.
            Costs one forward pass over the training split per epoch.
        command: the command line, for the model card.
    """

    data: str
    model: str = "mv-m3ae-tiny"
    out: str = "finetuned"
    dataset: Optional[str] = None
    epochs: int = 30
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    freeze_encoder: bool = False
    label_smoothing: float = 0.0
    num_points: Optional[int] = None
    val_fraction: float = 0.2
    augment: str = "scale_translate"
    up_axis: str = "y"
    seed: int = 0
    workers: int = 0
    device: Optional[str] = None
    resume: bool = False
    pretrained: bool = True
    cache_dir: Optional[str] = None
    recalibrate_bn: Optional[bool] = None
    progress: bool = True
    command: Optional[str] = None

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}.")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if self.num_points is not None and self.num_points < 1:
            raise ConfigError(f"num_points must be >= 1, got {self.num_points}.")

    def identity(self) -> Dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        keys = ("data", "model", "dataset", "freeze_encoder", "num_points", "val_fraction", "seed", "pretrained")
        return {k: getattr(self, k) for k in keys}


@dataclass
class FinetuneResult:
    """What :func:`finetune` measured and wrote.

    Attributes:
        out: the saved classifier folder.
        best_epoch: 1-based epoch whose weights were kept.
        val_accuracy / val_mean_class_accuracy: of the kept weights on the validation split
            (NaN without one).
        test_accuracy / test_mean_class_accuracy: of the kept weights on the test split,
            measured once at the end when the data has one (NaN otherwise).
        history: per epoch: loss, train accuracy, val accuracy, lr.
        skipped: (file, reason) of unreadable files.
        model: the kept classifier (eval mode, on the CPU), as saved in ``out``.
    """

    out: Path
    class_names: List[str]
    best_epoch: int
    val_accuracy: float
    val_mean_class_accuracy: float
    test_accuracy: float = float("nan")
    test_mean_class_accuracy: float = float("nan")
    history: List[Dict[str, float]] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    num_train: int = 0
    num_val: int = 0
    num_test: int = 0
    model: Optional[PointClassifier] = None


# -- data -------------------------------------------------------------------------------------
def _subset(ds, idx: np.ndarray, name: str, transform=None):
    from ..data.datasets import PointCloudDataset

    files = [ds.files[i] for i in idx] if getattr(ds, "files", None) else None
    return PointCloudDataset(ds.points[idx], ds.labels[idx], ds.class_names, transform=transform, seed=ds.seed, files=files, name=name)


def _split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    from ..data.datasets import stratified_split

    items = [(Path(f"{i:09d}"), int(y)) for i, y in enumerate(labels)]
    tr, va = stratified_split(items, val_fraction, seed)
    return np.asarray([int(p.name) for p, _ in tr], dtype=np.int64), np.asarray([int(p.name) for p, _ in va], dtype=np.int64)


def build_datasets(cfg: FinetuneConfig, num_points: int, transform, *, progress: bool = True):
    """(train, val or None, test or None, skipped files) for a fine-tuning run.

    Raises:
        DatasetError: bad folder layout, unknown standard data set, or a split without data.
    """
    from ..data.datasets import FolderDataset, PointCloudDataset, scan_folder
    from ..data.standard import load_standard

    skipped: List[Tuple[str, str]] = []
    if cfg.dataset:
        kw: Dict[str, Any] = {"num_points": num_points, "seed": cfg.seed, "progress": progress}
        if cfg.dataset == "modelnet40" and cfg.cache_dir:
            kw["cache_dir"] = cfg.cache_dir
        full = load_standard(cfg.dataset, cfg.data, "train", **kw)
        if not isinstance(full, PointCloudDataset):
            raise DatasetError(f"{cfg.dataset} is a pretraining set and cannot be fine-tuned on here.")
        test = load_standard(cfg.dataset, cfg.data, "test", **kw)
        tr, va = _split_indices(full.labels, cfg.val_fraction, cfg.seed)
        train = _subset(full, tr, f"{cfg.dataset}:train", transform)
        val = _subset(full, va, f"{cfg.dataset}:val") if len(va) else None
        return train, val, test, skipped
    common = dict(num_points=num_points, val_fraction=cfg.val_fraction, seed=cfg.seed, cache_dir=cfg.cache_dir, progress=progress)
    layout = scan_folder(cfg.data)
    train = FolderDataset(cfg.data, split="train", transform=transform, **common)
    skipped += train.skipped
    val = None
    if cfg.val_fraction > 0 or "val" in layout.files:
        try:
            val = FolderDataset(cfg.data, split="val", **common)
            skipped += val.skipped
        except DatasetError as e:
            if "no readable files" not in str(e):
                raise
            logger.warning("no validation samples (%s); keeping the last epoch", e)
    test = None
    if layout.presplit and "test" in layout.files:
        test = FolderDataset(cfg.data, split="test", **common)
        skipped += test.skipped
    counts = train.class_counts()
    if (counts > 0).sum() < 2:
        raise DatasetError(
            f"{cfg.data!r}: the training split has readable files for {(counts > 0).sum()} class(es); "
            "classification needs at least two."
        )
    return train, val, test, skipped


# -- model ------------------------------------------------------------------------------------
def build_classifier(
    model: str, num_classes: int, class_names: Sequence[str], *, pretrained: bool = True, linear_head: bool = False
) -> PointClassifier:
    """A classifier on a pretrained encoder (its checkpoint loaded strictly) with a new head.

    With ``linear_head`` the head is one linear layer (the linear-probe protocol). A
    fine-tuned classifier with the same classes keeps its head (training continues).
    ``pretrained=False`` builds the same architecture with random weights (a baseline).
    """
    hidden: Tuple[int, ...] = () if linear_head else tuple(ClassifierConfig().hidden_dims)
    return PointClassifier.from_pretrained(
        model, pretrained=pretrained, num_classes=num_classes, class_names=tuple(class_names), hidden_dims=hidden
    )


def load_classifier(name_or_path: str, *, device: Optional[str] = None) -> PointClassifier:
    """A saved classifier (folder or Hub repo id), with its head and class names, eval mode.

    Raises:
        ConfigError: the folder holds an encoder, not a classifier.
    """
    from ..config import load_config_file

    folder = Path(name_or_path)
    if (folder / "config.json").is_file():
        arch, _ = load_config_file(folder / "config.json")
        if arch != PointClassifier.architecture:
            raise ConfigError(
                f"{name_or_path} holds a {arch}, not a PointClassifier. Fine-tune it first: "
                f"`mv2d3d finetune DATA --model {name_or_path} --out my-classifier`."
            )
    return PointClassifier.from_pretrained(name_or_path, device=device)


# -- trainer checkpoints ----------------------------------------------------------------------
def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.incomplete")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_safetensors(state: Dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.incomplete")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)


def trainer_dir(out: os.PathLike) -> Path:
    """Where a run keeps its resumable state: ``<out>.trainer/`` next to the output folder."""
    out = Path(out)
    return out.with_name(out.name + ".trainer")


# -- the loop ---------------------------------------------------------------------------------
def _cosine(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _evaluate(model: PointClassifier, ds, batch_size: int, info: D.DistInfo, device: torch.device) -> np.ndarray:
    """Confusion matrix over ``ds``, each rank scoring its shard, summed over ranks."""
    from .evaluate import classifier_logits

    L = model.config.num_classes
    idx = list(range(info.rank, len(ds), info.world_size))
    probs, labels = classifier_logits(model, ds, batch_size=batch_size, indices=idx)
    cm = torch.from_numpy(confusion_matrix(labels, probs.argmax(1) if len(probs) else labels, L)).to(device)
    if info.enabled:
        torch.distributed.all_reduce(cm)
    return cm.cpu().numpy()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset, batch_size: int, info: D.DistInfo, device: torch.device) -> int:
    """Recompute the running statistics of every *trainable* BatchNorm layer of ``model``
    exactly (cumulative average instead of the momentum average) over ``dataset``, each rank
    over its shard, averaged over ranks.

    The forward passes run in the mode training used (dropout and drop-path on; a frozen
    encoder in eval mode), as ``torch.optim.swa_utils.update_bn`` does: eval-mode statistics
    would not match what the layers after each BatchNorm were trained on. Frozen layers
    keep their statistics. Returns the number of recalibrated layers.
    """
    from torch.utils.data import DataLoader, Subset

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats and any(p.requires_grad for p in m.parameters())]
    if not bns:
        return 0
    was_training = model.training
    frozen = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training]
    model.train()
    for m in frozen:
        m.eval()
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches
    idx = list(range(info.rank, len(dataset), info.world_size))
    try:
        for pts, _ in DataLoader(Subset(dataset, idx), batch_size=batch_size, shuffle=False):
            if len(pts) > 1:
                model(pts.to(device))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
        for m in frozen:
            m.eval()
    if info.enabled:
        for m in bns:
            for buf in (m.running_mean, m.running_var):
                torch.distributed.all_reduce(buf)
                buf /= info.world_size
    return len(bns)


def finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Fine-tune a pretrained encoder on ``cfg.data``; see :class:`FinetuneConfig`.

    Returns:
        A :class:`FinetuneResult` (rank 0's; the same numbers on every rank).

    Raises:
        DatasetError: unusable data (missing folder, one class, no readable files, ...).
        ConfigError: invalid options, or ``resume`` from a run with different data/model.
        UnknownModelError, CheckpointMismatchError: the model cannot be loaded.
    """
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from tqdm.auto import tqdm

    from ..data.transforms import default_train_transform

    cfg.validate()
    info = D.init_distributed(cfg.device)
    try:
        device = D.default_device(cfg.device, info)
        out = Path(cfg.out)
        work = trainer_dir(out)
        if cfg.num_points:
            num_points = cfg.num_points
        else:  # the density the encoder was trained at (its architecture only, no weights)
            from ..hub import load

            num_points = load(cfg.model, pretrained=False).config.num_points
        transform = default_train_transform(cfg.augment, up_axis=cfg.up_axis)
        train, val, test, skipped = build_datasets(cfg, num_points, transform, progress=cfg.progress and info.is_main)
        names = list(train.class_names)
        torch.manual_seed(cfg.seed)  # same head initialisation on every rank
        model = build_classifier(cfg.model, len(names), names, pretrained=cfg.pretrained, linear_head=cfg.freeze_encoder)
        model.to(device)
        if cfg.freeze_encoder:
            for p in model.encoder.parameters():
                p.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
        )
        sampler = DistributedSampler(train, info.world_size, info.rank, shuffle=True, seed=cfg.seed, drop_last=False) if info.enabled else None
        g = torch.Generator().manual_seed(cfg.seed)
        per_rank = math.ceil(len(train) / info.world_size)
        # BatchNorm in the head cannot train on a batch of one: drop a trailing single sample
        drop_last = per_rank % cfg.batch_size == 1
        loader = DataLoader(
            train, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler, generator=g,
            num_workers=cfg.workers, drop_last=drop_last, persistent_workers=False,
        )
        steps_per_epoch = max(1, len(loader))
        total = steps_per_epoch * cfg.epochs
        warmup = steps_per_epoch * min(cfg.warmup_epochs, max(0, cfg.epochs - 1))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, total, warmup))
        crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        recalibrate = cfg.recalibrate_bn if cfg.recalibrate_bn is not None else steps_per_epoch < 100
        plain_train = _subset(train, np.arange(len(train)), train.name) if recalibrate else None  # no augmentation

        start_epoch, best_acc, best_epoch, history = 0, -1.0, 0, []
        best_path, last_path = work / "best.safetensors", work / "last.pt"
        if cfg.resume and last_path.exists():
            ck = torch.load(last_path, map_location="cpu", weights_only=True)
            saved = json.loads(ck["identity"])
            if saved != json.loads(json.dumps(cfg.identity())):
                diff = {k: (saved.get(k), v) for k, v in cfg.identity().items() if saved.get(k) != v}
                raise ConfigError(
                    f"--resume: {last_path} belongs to a different run (differs in {diff}). Use the same options, "
                    f"or start over without --resume (or with another --out)."
                )
            model.load_state_dict_strict(ck["model"], source=str(last_path))
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start_epoch, best_acc, best_epoch = int(ck["epoch"]), float(ck["best_acc"]), int(ck["best_epoch"])
            history = json.loads(ck["history"])
            if info.is_main:
                logger.info("resuming from %s after epoch %d (best val accuracy %.4f)", last_path, start_epoch, best_acc)
        elif cfg.resume:
            logger.info("--resume: no checkpoint at %s, starting from scratch", last_path)

        train_model: nn.Module = model
        if info.enabled:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if info.is_main:
            logger.info(
                "fine-tuning %s on %s: %d train / %d val / %d test samples, %d classes, %d epoch(s), %s",
                cfg.model, cfg.data, len(train), len(val) if val else 0, len(test) if test else 0, len(names),
                cfg.epochs, "linear probe" if cfg.freeze_encoder else "full fine-tune",
            )
        for epoch in range(start_epoch, cfg.epochs):
            train.set_epoch(epoch)
            # every random draw of an epoch (shuffle, dropout, drop-path) is a function of
            # (seed, epoch): a resumed run repeats exactly what the uninterrupted run did
            g.manual_seed(cfg.seed * 100_003 + epoch)
            torch.manual_seed(cfg.seed * 100_003 + epoch + 1)
            if sampler is not None:
                sampler.set_epoch(epoch)
            train_model.train()
            if cfg.freeze_encoder:
                model.encoder.eval()  # frozen: BatchNorm statistics and drop-path off
            stats = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, seen
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not (cfg.progress and info.is_main))
            for pts, y in bar:
                pts, y = pts.to(device), y.to(device)
                logits = train_model(pts)
                loss = crit(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                opt.step()
                sched.step()
                stats += torch.tensor([loss.item() * len(y), (logits.argmax(1) == y).sum().item(), len(y)], dtype=torch.float64, device=device)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if info.enabled:
                torch.distributed.all_reduce(stats)
            row = {
                "epoch": epoch + 1,
                "loss": float(stats[0] / max(stats[2], 1)),
                "train_accuracy": float(stats[1] / max(stats[2], 1)),
                "lr": float(opt.param_groups[0]["lr"]),
            }
            if recalibrate:
                recalibrate_batchnorm(model, plain_train, max(cfg.batch_size, 32), info, device)
            if val is not None:
                oa, macc = accuracies(_evaluate(model, val, cfg.batch_size, info, device))
                row.update(val_accuracy=oa, val_mean_class_accuracy=macc)
                improved = oa > best_acc
            else:
                improved = True  # no validation split: the last epoch is kept
            if improved:
                best_acc, best_epoch = row.get("val_accuracy", float("nan")), epoch + 1
                if info.is_main:
                    _atomic_safetensors(model.state_dict(), best_path)
            history.append(row)
            if info.is_main:
                logger.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
                _atomic_torch_save(
                    {
                        "epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "best_acc": best_acc if best_acc == best_acc else -1.0,
                        "best_epoch": best_epoch, "history": json.dumps(history), "identity": json.dumps(cfg.identity()),
                    },
                    last_path,
                )
            D.barrier(info)

        # keep the best epoch's weights, measure them once more, write the folder
        if best_path.exists():
            from safetensors.torch import load_file

            model.load_state_dict_strict(load_file(str(best_path)), source=str(best_path))
        val_oa = val_macc = test_oa = test_macc = float("nan")
        if val is not None:
            val_oa, val_macc = accuracies(_evaluate(model, val, cfg.batch_size, info, device))
        if test is not None:
            test_oa, test_macc = accuracies(_evaluate(model, test, cfg.batch_size, info, device))
        result = FinetuneResult(
            out, names, best_epoch, val_oa, val_macc, test_oa, test_macc, history, skipped,
            len(train), len(val) if val else 0, len(test) if test else 0,
        )
        if info.is_main:
            model.eval()
            model.cpu().save_pretrained(out, **_card(cfg, result))
            logger.info("wrote %s (best epoch %d, val accuracy %.4f)", out, best_epoch, val_oa)
        D.barrier(info)
        result.model = model.cpu().eval()
        return result
    finally:
        D.cleanup(info)


def _card(cfg: FinetuneConfig, r: FinetuneResult) -> Dict[str, Any]:
    data = f"{cfg.dataset}" if cfg.dataset else Path(cfg.data).name or str(cfg.data)
    metrics = []
    if r.val_accuracy == r.val_accuracy:  # not NaN
        metrics += [
            {"name": f"val accuracy ({r.num_val} samples)", "type": "accuracy", "value": round(r.val_accuracy, 4), "dataset": data},
            {"name": f"val mean-class accuracy ({r.num_val} samples)", "type": "mean_class_accuracy", "value": round(r.val_mean_class_accuracy, 4), "dataset": data},
        ]
    if r.test_accuracy == r.test_accuracy:
        metrics += [
            {"name": f"test accuracy ({r.num_test} samples)", "type": "accuracy", "value": round(r.test_accuracy, 4), "dataset": data},
            {"name": f"test mean-class accuracy ({r.num_test} samples)", "type": "mean_class_accuracy", "value": round(r.test_mean_class_accuracy, 4), "dataset": data},
        ]
    command = cfg.command or (
        f"mv2d3d finetune {cfg.data} --model {cfg.model} --epochs {cfg.epochs} --out {cfg.out}"
        + (f" --dataset {cfg.dataset}" if cfg.dataset else "")
    )
    mode = "linear probe (frozen encoder, linear head)" if cfg.freeze_encoder else "full fine-tune"
    training = (
        f"{data} ({cfg.data}): {r.num_train} training samples, {len(r.class_names)} classes; "
        f"{mode}, {cfg.epochs} epoch(s), best epoch {r.best_epoch} chosen on the validation split "
        f"({r.num_val} samples, val_fraction={cfg.val_fraction}, seed={cfg.seed}); single-pass accuracy, no voting."
    )
    if r.skipped:
        training += f" {len(r.skipped)} unreadable file(s) were skipped."
    card: Dict[str, Any] = {
        "datasets": [data],
        "metrics": metrics,
        "command": command,
        "class_names": list(r.class_names),
        "training_data": training,
    }
    if cfg.pretrained:
        card["base_model"] = cfg.model
    return card
