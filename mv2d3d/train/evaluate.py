"""Evaluation: frozen-encoder protocols (linear SVM, few-shot episodes) and the accuracy of
fine-tuned classifiers (overall, mean-class, confusion matrix and its plot).

Model selection never looks at the test split: the SVM's C is chosen by cross-validation on
the training split; fine-tuned classifiers are selected on a validation split (see
:mod:`mv2d3d.train.finetune`). Voting (averaging predictions over augmented copies) is
off unless asked for.

Shapes:
    S: samples, N: points, D: global feature width, L: classes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(encoder, points: np.ndarray, *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """Global features of many clouds with a frozen encoder (eval mode, no grad).

    Shapes:
        points: [S, N, 3] -> [S, D] float32
    """
    from tqdm.auto import tqdm

    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for s in tqdm(range(0, len(points), batch_size), desc="features", disable=not progress, unit="batch"):
            batch = torch.as_tensor(np.asarray(points[s : s + batch_size]), dtype=torch.float32)
            out.append(encoder(batch.to(encoder.device)).global_features.float().cpu().numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(out)


@dataclass
class SVMResult:
    """Linear-SVM protocol result: test accuracies and the C picked on the training split."""

    overall_accuracy: float
    mean_class_accuracy: float
    C: float


def linear_svm_eval(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    Cs: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0),
    cv_folds: int = 3,
    seed: int = 0,
) -> SVMResult:
    """Linear SVM on frozen features, the protocol of the literature, without test peeking.

    C is chosen by ``cv_folds``-fold cross-validation on the *training* split only; the test
    split is used once, for the reported numbers. Features are standardised with statistics
    of the training split.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    # the primal problem converges fast when samples outnumber features (the usual case)
    dual = bool(train_features.shape[0] < train_features.shape[1])

    def model(C: float):
        return make_pipeline(StandardScaler(), LinearSVC(C=C, dual=dual, max_iter=20000, random_state=seed))

    counts = np.bincount(train_labels)
    folds = int(min(cv_folds, counts[counts > 0].min()))
    if len(Cs) > 1 and folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        scores = [cross_val_score(model(C), train_features, train_labels, cv=cv).mean() for C in Cs]
        best = float(Cs[int(np.argmax(scores))])
    else:
        best = float(Cs[0])
    clf = model(best).fit(train_features, train_labels)
    pred = clf.predict(test_features)
    oa = float((pred == test_labels).mean())
    per_class = [float((pred[test_labels == c] == c).mean()) for c in np.unique(test_labels)]
    return SVMResult(oa, float(np.mean(per_class)), best)


# -- datasets -> features ---------------------------------------------------------------------
def _loader(dataset, batch_size: int, workers: int = 0, indices: Optional[Sequence[int]] = None):
    from torch.utils.data import DataLoader, Subset

    ds = Subset(dataset, list(indices)) if indices is not None else dataset
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, drop_last=False)


@torch.no_grad()
def dataset_features(
    encoder, dataset, *, batch_size: int = 32, workers: int = 0, progress: bool = False, desc: str = "features"
) -> Tuple[np.ndarray, np.ndarray]:
    """Global features and labels of every sample of a labelled dataset (no augmentation is
    applied unless the dataset has a transform).

    Shapes:
        -> (features [S, D] float32, labels [S] int64)
    """
    from tqdm.auto import tqdm

    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    try:
        for pts, y in tqdm(_loader(dataset, batch_size, workers), desc=desc, unit="batch", disable=not progress):
            feats.append(encoder(pts.to(encoder.device)).global_features.float().cpu().numpy())
            labels.append(np.asarray(y, dtype=np.int64))
    finally:
        encoder.train(was_training)
    return np.concatenate(feats), np.concatenate(labels)


# -- few-shot episodes ------------------------------------------------------------------------
@dataclass
class FewShotResult:
    """Accuracy over few-shot episodes: mean and (population) std in [0, 1], and each episode's."""

    n_way: int
    k_shot: int
    mean: float
    std: float
    accuracies: List[float] = field(default_factory=list)


def few_shot_eval(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    n_way: int = 5,
    k_shot: int = 10,
    episodes: int = 10,
    query: int = 20,
    C: float = 1.0,
    seed: int = 0,
) -> FewShotResult:
    """N-way K-shot episodes on frozen features with a linear SVM.

    Each episode draws ``n_way`` classes (among those with at least ``k_shot`` training and
    one test sample), ``k_shot`` support samples per class from the *training* split and up
    to ``query`` query samples per class from the *test* split, fits a standardised linear
    SVM (fixed ``C``: there is nothing to cross-validate on with K samples) on the support
    set and scores the queries. Episodes are drawn by a generator seeded with ``seed``.

    Shapes:
        train_features [S1, D], train_labels [S1], test_features [S2, D], test_labels [S2]

    Raises:
        ValueError: fewer than ``n_way`` classes with enough samples.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if n_way < 2 or k_shot < 1 or episodes < 1 or query < 1:
        raise ValueError(f"need n_way >= 2, k_shot >= 1, episodes >= 1, query >= 1 (got {n_way}, {k_shot}, {episodes}, {query})")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    eligible = [
        c for c in np.unique(train_labels) if (train_labels == c).sum() >= k_shot and (test_labels == c).sum() >= 1
    ]
    if len(eligible) < n_way:
        raise ValueError(
            f"{n_way}-way {k_shot}-shot needs {n_way} classes with >= {k_shot} training samples and >= 1 test "
            f"sample; only {len(eligible)} qualify. Use a smaller N or K."
        )
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(episodes):
        classes = rng.choice(eligible, n_way, replace=False)
        sx, sy, qx, qy = [], [], [], []
        for j, c in enumerate(classes):
            tr = rng.choice(np.flatnonzero(train_labels == c), k_shot, replace=False)
            te_all = np.flatnonzero(test_labels == c)
            te = rng.choice(te_all, min(query, len(te_all)), replace=False)
            sx.append(train_features[tr]); sy += [j] * len(tr)
            qx.append(test_features[te]); qy += [j] * len(te)
        X = np.concatenate(sx)
        clf = make_pipeline(StandardScaler(), LinearSVC(C=C, dual=bool(len(X) < X.shape[1]), max_iter=20000, random_state=seed))
        clf.fit(X, np.asarray(sy))
        accs.append(float((clf.predict(np.concatenate(qx)) == np.asarray(qy)).mean()))
    return FewShotResult(n_way, k_shot, float(np.mean(accs)), float(np.std(accs)), accs)


# -- fine-tuned classifiers -------------------------------------------------------------------
@dataclass
class ClassificationResult:
    """Accuracy of a classifier on a labelled split.

    Attributes:
        overall_accuracy: correct / samples.
        mean_class_accuracy: mean over classes (with at least one sample) of per-class recall.
        confusion: [L, L] counts, rows = true class, columns = predicted class.
        class_names: the L names.
    """

    overall_accuracy: float
    mean_class_accuracy: float
    confusion: np.ndarray
    class_names: List[str]

    @property
    def num_samples(self) -> int:
        return int(self.confusion.sum())


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Shapes: labels [S], predictions [S] -> [L, L] int64 (row = true, column = predicted)."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return cm


def accuracies(confusion: np.ndarray) -> Tuple[float, float]:
    """(overall, mean-class) accuracy of a confusion matrix; classes without samples are left
    out of the mean."""
    total = confusion.sum()
    if total == 0:
        return float("nan"), float("nan")
    support = confusion.sum(1)
    recall = np.diag(confusion)[support > 0] / support[support > 0]
    return float(np.trace(confusion) / total), float(recall.mean())


@torch.no_grad()
def classifier_logits(
    model,
    dataset,
    *,
    batch_size: int = 32,
    workers: int = 0,
    indices: Optional[Sequence[int]] = None,
    votes: int = 1,
    vote_transform: Any = None,
    seed: int = 0,
    progress: bool = False,
    desc: str = "eval",
) -> Tuple[np.ndarray, np.ndarray]:
    """Class probabilities of a :class:`~mv2d3d.models.PointClassifier` on a dataset.

    ``votes > 1`` averages the softmax over ``votes`` copies of each cloud, the copies
    after the first passed through ``vote_transform`` (seeded). It is off by default:
    published numbers of this package are single-pass.

    Shapes:
        -> (probabilities [S, L] float32, labels [S] int64)
    """
    from tqdm.auto import tqdm

    if votes > 1 and vote_transform is None:
        raise ValueError("votes > 1 needs a vote_transform (e.g. ScaleTranslate())")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probs, labels = [], []
    rng = np.random.default_rng(seed)
    try:
        for pts, y in tqdm(_loader(dataset, batch_size, workers, indices), desc=desc, unit="batch", disable=not progress):
            p = model(pts.to(device)).float().softmax(-1)
            for _ in range(votes - 1):
                aug = torch.stack([torch.from_numpy(np.asarray(vote_transform(c.numpy().copy(), rng), dtype=np.float32)) for c in pts])
                p = p + model(aug.to(device)).float().softmax(-1)
            probs.append((p / votes).cpu().numpy())
            labels.append(np.asarray(y, dtype=np.int64))
    finally:
        model.train(was_training)
    if not probs:
        n = getattr(getattr(model, "config", None), "num_classes", 0)
        return np.zeros((0, n), np.float32), np.zeros(0, np.int64)
    return np.concatenate(probs), np.concatenate(labels)


def evaluate_classifier(
    model,
    dataset,
    *,
    batch_size: int = 32,
    workers: int = 0,
    votes: int = 1,
    vote_transform: Any = None,
    progress: bool = False,
) -> ClassificationResult:
    """Accuracy and confusion matrix of a classifier on a labelled dataset (single pass
    unless ``votes > 1``).

    Raises:
        ValueError: the dataset's labels go beyond the model's classes.
    """
    probs, labels = classifier_logits(
        model, dataset, batch_size=batch_size, workers=workers, votes=votes, vote_transform=vote_transform,
        progress=progress,
    )
    L = probs.shape[1]
    if len(labels) and labels.max() >= L:
        raise ValueError(f"dataset labels reach {labels.max()} but the model has {L} classes")
    cm = confusion_matrix(labels, probs.argmax(1), L)
    oa, macc = accuracies(cm)
    names = list(getattr(model, "class_names", [str(i) for i in range(L)]))
    return ClassificationResult(oa, macc, cm, names)


def plot_confusion_matrix(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: Union[str, "os.PathLike[str]"],
    *,
    title: str = "",
    normalize: bool = True,
) -> Path:
    """Save a confusion matrix as a PNG (matplotlib, Agg backend, imported here only).

    Rows are true classes, columns predictions; with ``normalize`` each row shows the share
    of its class (counts are printed in cells when there are at most 20 classes). Written to
    a temporary file and renamed.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=np.float64)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    L = len(class_names)
    size = max(4.0, min(24.0, 0.35 * L + 2.5))
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    try:
        im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
        ax.set_xticks(range(L))
        ax.set_yticks(range(L))
        ax.set_xticklabels(class_names, rotation=90, fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        if L <= 20:
            for i in range(L):
                for j in range(L):
                    if cm[i, j]:
                        ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                                color="white" if shown[i, j] > 0.5 * (shown.max() or 1) else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.incomplete.png")
        fig.savefig(tmp, dpi=120, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path
