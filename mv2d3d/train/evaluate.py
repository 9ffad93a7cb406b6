"""Evaluation of frozen encoders: feature extraction and the linear-SVM protocol.

Shapes:
    S: samples, N: points, D: global feature width.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

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

    def model(C: float):
        return make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=20000, random_state=seed))

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
