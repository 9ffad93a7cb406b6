"""Evaluation: linear SVM and few-shot on frozen features (`eval-svm`), accuracy and
confusion-matrix PNG of a fine-tuned classifier (`eval`)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mv2d3d import PointClassifier
from mv2d3d.cli import main
from mv2d3d.config import ClassifierConfig
from mv2d3d.data import make_dataset
from mv2d3d.data.procedural import write_folder
from mv2d3d.train.evaluate import (
    accuracies,
    confusion_matrix,
    evaluate_classifier,
    few_shot_eval,
    linear_svm_eval,
    plot_confusion_matrix,
)

from tiny_models import TINY, save_calibrated_tiny_encoder  # noqa: E402

FAMILIES = ["ring", "chair", "bottle", "snowman", "table"]  # chance = 0.2


@pytest.fixture(scope="module")
def ev_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    enc = save_calibrated_tiny_encoder(root / "enc")
    data = root / "shapes"
    write_folder(data, 12, 256, families=FAMILIES, test_per_family=8, seed=3)
    return root, enc, data


def test_eval_svm_on_generated_data_beats_chance(ev_env, capsys):
    root, enc, data = ev_env
    assert main(["eval-svm", str(data), "--model", str(enc)]) == 0
    out = capsys.readouterr().out
    assert "60 train / 40 test samples, 5 classes" in out
    oa, macc = (float(x) / 100 for x in re.search(r"overall accuracy ([\d.]+)%, mean-class accuracy ([\d.]+)%", out).groups())
    assert oa >= 0.6 and macc >= 0.6, out  # chance is 0.2
    assert "chosen by cross-validation on train" in out


def test_eval_svm_few_shot_and_flat_folder(ev_env, tmp_path, capsys):
    root, enc, data = ev_env
    assert main(["eval-svm", str(data), "--model", str(enc), "--few-shot", "3-way", "5-shot", "--episodes", "4", "--query", "5"]) == 0
    out = capsys.readouterr().out
    mean, std = (float(x) for x in re.search(r"3-way 5-shot, 4 episodes: accuracy ([\d.]+) \+- ([\d.]+)%", out).groups())
    assert mean >= 60 and 0 <= std <= 50
    flat = tmp_path / "flat"
    write_folder(flat, 10, 256, families=FAMILIES[:3], seed=4)
    assert main(["eval-svm", str(flat), "--model", str(enc), "--val-fraction", "0.3"]) == 0
    assert "21 train / 9 val samples" in capsys.readouterr().out
    assert main(["eval-svm", str(data), "--model", str(enc), "--few-shot", "five", "shots"]) == 1
    assert "N-way K-shot" in capsys.readouterr().err


def test_few_shot_episodes_unit():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 8)) * 5
    tr_y, te_y = np.repeat(np.arange(6), 12), np.repeat(np.arange(6), 6)
    tr_x = centers[tr_y] + rng.normal(size=(72, 8))
    te_x = centers[te_y] + rng.normal(size=(36, 8))
    r = few_shot_eval(tr_x, tr_y, te_x, te_y, n_way=5, k_shot=2, episodes=6, query=4, seed=1)
    assert len(r.accuracies) == 6 and r.mean > 0.9 and r.std == pytest.approx(np.std(r.accuracies))
    assert few_shot_eval(tr_x, tr_y, te_x, te_y, n_way=5, k_shot=2, episodes=6, query=4, seed=1).accuracies == r.accuracies
    # labels carry no information -> near chance (1/5)
    noise = few_shot_eval(rng.normal(size=(72, 8)), tr_y, rng.normal(size=(36, 8)), te_y, n_way=5, k_shot=2, episodes=20, query=4)
    assert noise.mean < 0.45
    with pytest.raises(ValueError, match="only 6 qualify"):
        few_shot_eval(tr_x, tr_y, te_x, te_y, n_way=7, k_shot=2)


def test_linear_svm_chooses_C_on_train_only():
    rng = np.random.default_rng(0)
    tr_x, tr_y = rng.normal(size=(60, 5)), np.repeat([0, 1, 2], 20)
    tr_x[:, 0] += tr_y * 3
    te_x, te_y = rng.normal(size=(30, 5)), np.repeat([0, 1, 2], 10)
    te_x[:, 0] += te_y * 3
    a = linear_svm_eval(tr_x, tr_y, te_x, te_y)
    # shuffling the test labels must not change the chosen C (the test split is not looked at)
    b = linear_svm_eval(tr_x, tr_y, te_x, rng.permutation(te_y))
    assert a.C == b.C and a.overall_accuracy > 0.8 and b.overall_accuracy < a.overall_accuracy


def test_confusion_and_accuracies():
    cm = confusion_matrix(np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 0, 2]), 4)
    assert cm.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    oa, macc = accuracies(cm)
    assert oa == pytest.approx(4 / 6) and macc == pytest.approx((0.5 + 2 / 3 + 1) / 3)  # empty class left out


def test_eval_cli_accuracy_and_confusion_png(ev_env, tmp_path, capsys):
    root, enc, data = ev_env
    out = root / "clf"
    assert main(["finetune", str(data), "--model", str(enc), "--out", str(out), "--epochs", "2", "--batch-size", "8",
                 "--lr", "3e-3", "--warmup-epochs", "0", "--num-points", "256"]) == 0
    ft = capsys.readouterr().out
    test_acc = float(re.search(r"test accuracy ([\d.]+)%", ft).group(1))
    png = tmp_path / "cm.png"
    assert main(["eval", str(out), str(data), "--plot", str(png)]) == 0
    ev = capsys.readouterr().out
    assert "test split: 40 samples, 5 classes (single pass, no voting)" in ev
    oa = float(re.search(r"overall accuracy ([\d.]+)%", ev).group(1))
    assert oa == test_acc and oa >= 40  # same weights and split as finetune measured (62.5 here); chance 20
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not list(tmp_path.glob(".*incomplete*"))
    # an explicit vote count is accepted and reported as such
    assert main(["eval", str(out), str(data), "--plot", str(png), "--votes", "2"]) == 0
    assert "2-vote" in capsys.readouterr().out
    # data whose classes the classifier does not know: a typed error
    other = tmp_path / "other"
    write_folder(other, 2, 64, families=["ring", "car"], test_per_family=2)
    assert main(["eval", str(out), str(other), "--plot", str(png)]) == 1
    assert "not among the model's classes" in capsys.readouterr().err


def test_evaluate_classifier_api_and_plot(tmp_path):
    torch.manual_seed(0)
    clf = PointClassifier(ClassifierConfig(encoder=TINY, num_classes=3, class_names=("a", "b", "c")))
    from mv2d3d.data.datasets import PointCloudDataset

    pts, labels, _ = make_dataset(3, 128, families=["ring", "mug", "tree"], seed=0)
    r = evaluate_classifier(clf, PointCloudDataset(pts, labels, ["a", "b", "c"]), batch_size=4)
    assert r.confusion.shape == (3, 3) and r.num_samples == 9 and r.class_names == ["a", "b", "c"]
    probs = clf.predict(torch.from_numpy(pts)).argmax(1).numpy()
    assert r.overall_accuracy == pytest.approx((probs == labels).mean())
    path = plot_confusion_matrix(r.confusion, r.class_names, tmp_path / "sub" / "c.png", title="t")
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="vote_transform"):
        evaluate_classifier(clf, PointCloudDataset(pts, labels, ["a", "b", "c"]), votes=3)


def test_benchmark_path_eval_svm_and_finetune(ev_env, tmp_path, capsys):
    """`--dataset scanobjectnn-objbg` end to end on h5 files in the published layout, filled
    with procedural shapes (labels 0..2 of the 15 ScanObjectNN classes)."""
    import h5py

    root, enc, _ = ev_env
    fams = ["ring", "chair", "bottle"]
    for split, n, seed in (("training", 10, 0), ("test", 6, 1)):
        pts, labels, _ = make_dataset(n, 2048, families=fams, seed=seed)
        path = tmp_path / "h5_files" / "main_split" / f"{split}_objectdataset.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as h5:
            h5.create_dataset("data", data=pts)
            h5.create_dataset("label", data=labels)
    common = ["--dataset", "scanobjectnn-objbg", "--num-points", "256"]
    assert main(["eval-svm", str(tmp_path), "--model", str(enc), *common]) == 0
    out = capsys.readouterr().out
    assert "scanobjectnn-objbg: 30 train / 18 test samples" in out
    oa = float(re.search(r"overall accuracy ([\d.]+)%", out).group(1))
    assert oa >= 60  # chance 33
    clf = tmp_path / "sonn"
    assert main(["finetune", str(tmp_path), "--model", str(enc), "--out", str(clf), "--epochs", "1", "--batch-size", "8",
                 "--warmup-epochs", "0", "--val-fraction", "0.2", *common]) == 0
    out = capsys.readouterr().out
    assert "samples: 24 train, 6 val, 18 test" in out and "test accuracy" in out
    assert PointClassifier.from_pretrained(str(clf)).class_names[:3] == ["bag", "bin", "box"]
