"""Fine-tuning end to end: the `finetune` and `predict` verbs on a generated folder, reload
to identical predictions, resume, linear probe, typed errors, torchrun with 2 processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from mv2d3d import PointClassifier, PointEncoder
from mv2d3d.cli import main
from mv2d3d.data import FolderDataset
from mv2d3d.data.procedural import write_folder
from mv2d3d.errors import ConfigError, DatasetError, UnknownModelError
from mv2d3d.train.finetune import FinetuneConfig, finetune

from tiny_models import save_calibrated_tiny_encoder  # noqa: E402

FAMILIES = ["ring", "chair", "bottle"]  # chance = 1/3


@pytest.fixture(scope="module")
def ft_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    enc = save_calibrated_tiny_encoder(root / "tiny-encoder")
    data = root / "shapes"
    write_folder(data, 20, 256, families=FAMILIES, seed=1)
    (data / "ring" / "broken.ply").write_bytes(b"ply\nnonsense\x00")
    (data / "chair" / "empty.obj").write_bytes(b"")
    return root, enc, data


ARGS = ["--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--warmup-epochs", "0", "--num-points", "256", "--val-fraction", "0.25"]


def test_finetune_cli_learns_and_saves_a_reloadable_folder(ft_env, capsys):
    root, enc, data = ft_env
    out = root / "clf"
    assert main(["finetune", str(data), "--model", str(enc), "--out", str(out), *ARGS]) == 0
    text = capsys.readouterr()
    m = re.search(r"val accuracy ([\d.]+)%", text.out)
    assert m, text.out
    val_acc = float(m.group(1)) / 100
    assert val_acc >= 0.6, text.out  # chance is 0.33
    assert "broken.ply" in text.err and "empty.obj" in text.err  # bad files reported, run not stopped
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "PointClassifier" and cfg["class_names"] == sorted(FAMILIES)
    card = (out / "README.md").read_text()
    # the command that reproduces the run (every option not at its default)
    assert (f"mv2d3d finetune {data} --model {enc} --out {out} --epochs 2 --lr 0.003 --batch-size 8 "
            "--warmup-epochs 0 --num-points 256 --val-fraction 0.25`") in card
    assert f"{val_acc:.4f}".rstrip("0")[:4] in card  # the measured accuracy is on the card
    # reloaded, the folder scores exactly the reported accuracy on the same val split
    clf = PointClassifier.from_pretrained(str(out))
    val = FolderDataset(data, 256, split="val", val_fraction=0.25, seed=0)
    pred = clf.predict(torch.from_numpy(val.points)).argmax(1).numpy()
    assert abs((pred == val.labels).mean() - val_acc) < 1e-3

    # predict: class and probability per file; bad files on stderr, the rest still classified
    files = [val.files[0], val.files[-1], str(data / "ring" / "broken.ply")]
    assert main(["predict", str(out), *files]) == 0
    text = capsys.readouterr()
    lines = text.out.strip().splitlines()
    assert len(lines) == 2
    for line, f, p in zip(lines, (val.files[0], val.files[-1]), (pred[0], pred[-1])):
        name, cls, prob = line.split("\t")
        assert name == f and cls == clf.class_names[p] and 0 < float(prob) <= 1
    assert "broken.ply" in text.err


def test_api_result_model_equals_reloaded_folder(ft_env):
    root, enc, data = ft_env
    out = root / "clf-api"
    r = finetune(FinetuneConfig(data=str(data), model=str(enc), out=str(out), epochs=1, batch_size=8, lr=3e-3,
                                warmup_epochs=0, num_points=256, val_fraction=0.25, progress=False))
    assert r.best_epoch == 1 and len(r.history) == 1 and r.num_val == 14 and len(r.skipped) == 2  # 15 held out, one unreadable
    x = torch.from_numpy(FolderDataset(data, 256, split="val", val_fraction=0.25).points)
    again = PointClassifier.from_pretrained(str(out))
    assert torch.equal(r.model.predict(x), again.predict(x))  # bit-identical
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_resume_continues_and_refuses_another_run(ft_env, monkeypatch):
    import shutil

    import mv2d3d.train.finetune as ft

    root, enc, data = ft_env
    out = root / "clf-resume"
    base = dict(data=str(data), model=str(enc), out=str(out), batch_size=8, lr=3e-3, warmup_epochs=0, num_points=256,
                val_fraction=0.25, progress=False)
    full = finetune(FinetuneConfig(epochs=2, **base))
    shutil.rmtree(ft.trainer_dir(out))

    class Crash(Exception):
        pass

    real = ft._atomic_torch_save

    def crash_after_epoch_1(obj, path):
        real(obj, path)  # the checkpoint of epoch 1 is complete, then the process "dies"
        raise Crash

    monkeypatch.setattr(ft, "_atomic_torch_save", crash_after_epoch_1)
    with pytest.raises(Crash):
        finetune(FinetuneConfig(epochs=2, **base))
    monkeypatch.setattr(ft, "_atomic_torch_save", real)
    assert not [p for p in ft.trainer_dir(out).iterdir() if "incomplete" in p.name]
    resumed = finetune(FinetuneConfig(epochs=2, resume=True, **base))
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for a, b in zip(resumed.history, full.history):  # the same run as the uninterrupted one
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["val_accuracy"] == b["val_accuracy"]
    with pytest.raises(ConfigError, match="different run"):
        finetune(FinetuneConfig(epochs=3, resume=True, **{**base, "seed": 1}))


def test_linear_probe_keeps_the_encoder(ft_env):
    root, enc, data = ft_env
    r = finetune(FinetuneConfig(data=str(data), model=str(enc), out=str(root / "probe"), epochs=1, batch_size=8, lr=1e-2,
                                warmup_epochs=0, num_points=256, freeze_encoder=True, progress=False))
    assert r.model.config.hidden_dims == ()
    ref = PointEncoder.from_pretrained(str(enc)).state_dict()
    for k, v in r.model.encoder.state_dict().items():
        assert torch.equal(v, ref[k]), k  # weights and BatchNorm statistics untouched
    assert [n for n, _ in r.model.head.named_parameters()] == ["0.weight", "0.bias"]


def test_bad_inputs_give_typed_errors(ft_env, tmp_path, capsys):
    root, enc, data = ft_env
    kw = dict(model=str(enc), out=str(tmp_path / "o"), epochs=1, num_points=256, progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        finetune(FinetuneConfig(data=str(tmp_path / "missing"), **kw))
    one = tmp_path / "one"
    write_folder(one, 3, 64, families=["ring"])
    with pytest.raises(DatasetError, match="only one class"):
        finetune(FinetuneConfig(data=str(one), **kw))
    with pytest.raises(UnknownModelError):
        finetune(FinetuneConfig(data=str(data), **{**kw, "model": "mv-m3ae-tiniest"}))
    with pytest.raises(ConfigError, match="epochs"):
        finetune(FinetuneConfig(data=str(data), **{**kw, "epochs": 0}))
    # the CLI turns them into one line on stderr and exit code 1, nothing written
    assert main(["finetune", str(tmp_path / "missing"), "--model", str(enc), "--out", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["predict", str(enc), str(data / "ring")]) == 1  # an encoder is not a classifier
    assert "not a PointClassifier" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes(ft_env, tmp_path):
    root, enc, data = ft_env
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mv2d3d",
           "finetune", str(data), "--model", str(enc), "--out", str(out), "--device", "cpu", *ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("val accuracy") == 1  # rank 0 reports
    m = re.search(r"val accuracy ([\d.]+)%", p.stdout)
    assert float(m.group(1)) >= 50
    assert (out / "model.safetensors").exists()
    PointClassifier.from_pretrained(str(out))
