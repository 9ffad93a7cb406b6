"""Hub layer without a server: local folders, zoo entries (bundled), strict loading, cards, atomic saves."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mv2d3d
from mv2d3d import ClassifierConfig, EncoderConfig, PointClassifier, PointEncoder
from mv2d3d.errors import (
    CheckpointMismatchError,
    ConfigError,
    NoPretrainedWeightsError,
    UnknownModelError,
    WeightsIntegrityError,
)
from mv2d3d.hub import client, registry, save_pretrained
from mv2d3d.hub.registry import ZooEntry

TINY = EncoderConfig(embed_dim=64, depth=2, num_heads=2, num_points=256, num_groups=16, group_size=16, point_feature_layers=(0, 1))


def tiny_encoder(seed: int = 0) -> PointEncoder:
    torch.manual_seed(seed)
    return PointEncoder(TINY).eval()


def tiny_classifier(seed: int = 0, num_classes: int = 4) -> PointClassifier:
    torch.manual_seed(seed)
    names = tuple(f"c{i}" for i in range(num_classes))
    return PointClassifier(ClassifierConfig(encoder=TINY, num_classes=num_classes, class_names=names, hidden_dims=(32, 32))).eval()


def cloud(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 300, 3, generator=g)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- save -> load ----------------------------------------------------------------------------------


def test_save_load_local_bit_identical(tmp_path):
    enc = tiny_encoder()
    folder = save_pretrained(enc, tmp_path / "enc")
    assert sorted(p.name for p in Path(folder).iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert cfg["architecture"] == "PointEncoder" and cfg["mv2d3d_version"] == mv2d3d.__version__
    from safetensors import safe_open

    with safe_open(str(tmp_path / "enc" / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    back = mv2d3d.load(tmp_path / "enc")
    assert isinstance(back, PointEncoder) and not back.training
    assert_same_state(enc, back)
    with torch.inference_mode():
        a, b = enc(cloud()), back(cloud())
    assert torch.equal(a.global_features, b.global_features)
    assert torch.equal(a.patch_features, b.patch_features)


def test_load_device_dtype_and_eval(tmp_path):
    enc = tiny_encoder()
    enc.train()
    save_pretrained(enc, tmp_path / "enc")
    back = mv2d3d.load(str(tmp_path / "enc"), dtype=torch.float64, device="cpu")
    assert not back.training
    assert {p.dtype for p in back.parameters()} == {torch.float64}
    assert back.device.type == "cpu"


def test_save_method_on_model_and_from_pretrained(tmp_path):
    enc = tiny_encoder(3)
    enc.save_pretrained(tmp_path / "m")
    back = PointEncoder.from_pretrained(str(tmp_path / "m"))
    assert_same_state(enc, back)


# -- corrupt / mismatched files ----------------------------------------------------------------------


def test_truncated_safetensors(tmp_path):
    save_pretrained(tiny_encoder(), tmp_path / "enc")
    w = tmp_path / "enc" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(WeightsIntegrityError, match="truncated or corrupt"):
        mv2d3d.load(tmp_path / "enc")


def test_garbage_weights(tmp_path):
    save_pretrained(tiny_encoder(), tmp_path / "enc")
    (tmp_path / "enc" / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file at all" * 10)
    with pytest.raises(WeightsIntegrityError):
        mv2d3d.load(tmp_path / "enc")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.update(architecture="PointTransformerV9"), "PointTransformerV9"),
        (lambda c: c.update(mystery_field=3), "mystery_field"),
        (lambda c: c.pop("architecture"), "architecture"),
    ],
)
def test_bad_config_json(tmp_path, edit, match):
    save_pretrained(tiny_encoder(), tmp_path / "enc")
    p = tmp_path / "enc" / "config.json"
    cfg = json.loads(p.read_text())
    edit(cfg)
    p.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=match):
        mv2d3d.load(tmp_path / "enc")


def _rewrite_weights(folder: Path, fn) -> None:
    w = folder / "model.safetensors"
    tensors = load_file(str(w))
    fn(tensors)
    save_file(tensors, str(w), metadata={"format": "pt"})


def test_missing_unexpected_misshaped_tensors(tmp_path):
    folder = tmp_path / "enc"
    save_pretrained(tiny_encoder(), folder)
    key = "norm.weight"
    _rewrite_weights(folder, lambda t: t.pop(key))
    with pytest.raises(CheckpointMismatchError) as e:
        mv2d3d.load(folder)
    assert e.value.missing == [key] and not e.value.unexpected

    save_pretrained(tiny_encoder(), folder)
    _rewrite_weights(folder, lambda t: t.update(extra=torch.zeros(3)))
    with pytest.raises(CheckpointMismatchError) as e:
        mv2d3d.load(folder)
    assert e.value.unexpected == ["extra"] and not e.value.missing

    save_pretrained(tiny_encoder(), folder)
    _rewrite_weights(folder, lambda t: t.update({key: torch.zeros(7)}))
    with pytest.raises(CheckpointMismatchError) as e:
        mv2d3d.load(folder)
    assert len(e.value.mismatched) == 1 and key in e.value.mismatched[0]


def test_incomplete_folder(tmp_path):
    save_pretrained(tiny_encoder(), tmp_path / "enc")
    (tmp_path / "enc" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="model.safetensors"):
        mv2d3d.load(tmp_path / "enc")
    # pretrained=False needs only the config
    assert isinstance(mv2d3d.load(tmp_path / "enc", pretrained=False), PointEncoder)


# -- names ---------------------------------------------------------------------------------------------


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError) as e:
        mv2d3d.load("mv-m3ae-tinny")
    assert "mv-m3ae-tiny" in e.value.close_matches
    assert "Did you mean" in str(e.value) and "'mv-m3ae-tiny'" in str(e.value)


@pytest.mark.parametrize("name", ["./no/such/folder", "/definitely/not/here", "a/b/c", "~/nope-mv2d3d"])
def test_lookalike_path_is_refused_not_sent_to_hub(name):
    with pytest.raises(UnknownModelError, match="looks like a path"):
        mv2d3d.load(name)


def test_file_instead_of_folder(tmp_path):
    save_pretrained(tiny_encoder(), tmp_path / "enc")
    with pytest.raises(UnknownModelError, match="is a file"):
        mv2d3d.load(str(tmp_path / "enc" / "model.safetensors"))


# -- zoo entries -------------------------------------------------------------------------------------


@pytest.fixture
def zoo_tiny(monkeypatch):
    """A temporary zoo entry without weights (monkeypatched into the registry)."""
    entry = ZooEntry(name="test-hub-noweights", config=TINY, recipe="tiny-procedural-cpu", card="mv-m3ae-tiny.md")
    monkeypatch.setitem(registry._ZOO, entry.name, entry)
    return entry


def test_zoo_entry_without_weights(zoo_tiny):
    with pytest.raises(NoPretrainedWeightsError) as e:
        mv2d3d.load(zoo_tiny.name)
    msg = str(e.value)
    assert "pretrained=False" in msg and "mv2d3d pretrain --config tiny-procedural-cpu" in msg
    enc = mv2d3d.load(zoo_tiny.name, pretrained=False)
    assert isinstance(enc, PointEncoder) and enc.config == TINY and not enc.training


def test_real_zoo_entries_without_weights_say_so():
    for name in mv2d3d.list_models(pretrained=False):
        with pytest.raises(NoPretrainedWeightsError, match="pretrained=False"):
            mv2d3d.load(name)


def test_zoo_revision_is_pinned(zoo_tiny):
    with pytest.raises(ConfigError, match="pinned"):
        mv2d3d.load(zoo_tiny.name, revision="main")


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """A bundled zoo entry whose folder the test writes (registry + weights dir monkeypatched)."""
    root = tmp_path / "weights"
    enc = tiny_encoder(7)
    save_pretrained(enc, root / "tiny-test")
    folder = root / "tiny-test"
    pins = client.pin_files(folder)
    assert pins == {n: sha(folder / n) for n in ("config.json", "model.safetensors")}
    entry = ZooEntry(name="test-hub-bundled", config=TINY, bundled="tiny-test", sha256=pins, card="mv-m3ae-tiny.md")
    monkeypatch.setattr(registry, "BUNDLED_WEIGHTS_DIR", root)
    monkeypatch.setitem(registry._ZOO, entry.name, entry)
    return enc, entry, folder


def test_bundled_entry_loads_verified(bundled):
    enc, entry, folder = bundled
    assert entry.name in mv2d3d.list_models(pretrained=True)
    back = mv2d3d.load(entry.name)
    assert_same_state(enc, back)
    assert mv2d3d.download(entry.name) == str(folder)


def test_bundled_entry_hash_mismatch_is_an_error(bundled, monkeypatch):
    enc, entry, folder = bundled
    w = folder / "model.safetensors"
    tensors = load_file(str(w))
    tensors["norm.bias"] = tensors["norm.bias"] + 1e-3  # same shapes, different values
    save_file(tensors, str(w), metadata={"format": "pt"})
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        mv2d3d.load(entry.name)
    # an entry whose pins miss a file cannot be verified: refused too
    monkeypatch.setitem(registry._ZOO, entry.name, ZooEntry(name=entry.name, config=TINY, bundled="tiny-test", sha256={}))
    with pytest.raises(WeightsIntegrityError, match="pins no sha256"):
        mv2d3d.load(entry.name)


# -- task models -------------------------------------------------------------------------------------


def _new_tensors(caplog) -> list:
    for rec in caplog.records:
        m = re.search(r"newly initialised \(not in .*\): (\[.*\])", rec.getMessage())
        if m:
            return sorted(eval(m.group(1)))  # a list literal of tensor names, logged by the library
    return []


def test_classifier_from_encoder_new_head_logged(tmp_path, caplog):
    enc = tiny_encoder(1)
    save_pretrained(enc, tmp_path / "enc")
    with caplog.at_level(logging.INFO, logger="mv2d3d"):
        clf = PointClassifier.from_pretrained(str(tmp_path / "enc"), class_names=["a", "b", "c"], hidden_dims=(32,))
    assert clf.config.num_classes == 3 and clf.class_names == ["a", "b", "c"]
    assert clf.config.base_model == str(tmp_path / "enc")
    assert_same_state(enc, clf.encoder)
    assert _new_tensors(caplog) == sorted(k for k in clf.state_dict() if k.startswith("head."))
    assert not clf.training
    with pytest.raises(ConfigError, match="num_classes"):
        PointClassifier.from_pretrained(str(tmp_path / "enc"))


def test_classifier_roundtrip_and_num_classes_change(tmp_path, caplog):
    clf = tiny_classifier(2, num_classes=4)
    save_pretrained(clf, tmp_path / "clf")
    back = PointClassifier.from_pretrained(str(tmp_path / "clf"))
    assert_same_state(clf, back)
    assert back.class_names == ["c0", "c1", "c2", "c3"]
    with torch.inference_mode():
        assert torch.equal(clf(cloud()), back(cloud()))

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mv2d3d"):
        new = PointClassifier.from_pretrained(str(tmp_path / "clf"), num_classes=6)
    # only the last Linear changes shape: exactly its two tensors are new, the rest is loaded
    assert _new_tensors(caplog) == ["head.8.bias", "head.8.weight"]
    own = clf.state_dict()
    for k, v in new.state_dict().items():
        if not k.startswith("head.8."):
            assert torch.equal(v, own[k]), k
    assert new.config.num_classes == 6 and new.config.class_names is None
    assert new.config.base_model == str(tmp_path / "clf")


def test_encoder_from_classifier_drops_head(tmp_path, caplog):
    clf = tiny_classifier(4)
    save_pretrained(clf, tmp_path / "clf")
    with caplog.at_level(logging.INFO, logger="mv2d3d"):
        enc = mv2d3d.load(tmp_path / "clf")
    assert isinstance(enc, PointEncoder)
    assert_same_state(clf.encoder, enc)
    assert any("dropped task tensors" in r.getMessage() and "head.8.weight" in r.getMessage() for r in caplog.records)


def test_classifier_checkpoint_with_wrong_head_shape_is_not_relaxed(tmp_path):
    # Without a num_classes change, a head that does not fit is an error, not a silent re-init.
    clf = tiny_classifier(5)
    save_pretrained(clf, tmp_path / "clf")
    _rewrite_weights(tmp_path / "clf", lambda t: t.update({"head.8.bias": torch.zeros(9)}))
    with pytest.raises(CheckpointMismatchError):
        PointClassifier.from_pretrained(str(tmp_path / "clf"))


# -- atomic saves ------------------------------------------------------------------------------------


def _failing_writer(real):
    def write(tensors, path):
        Path(path).write_bytes(b"partial")  # half-written file, then the crash
        raise KeyboardInterrupt("interrupted while writing weights")

    return write


def test_interrupted_save_leaves_old_folder_intact(tmp_path, monkeypatch):
    import mv2d3d.hub.saving as saving

    target = tmp_path / "enc"
    save_pretrained(tiny_encoder(0), target)
    (target / "train_log.txt").write_text("user file")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    monkeypatch.setattr(saving, "write_weights", _failing_writer(saving.write_weights))
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(tiny_encoder(1), target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]  # no temp folder left behind
    # a new folder never appears half-written either
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(tiny_encoder(1), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert_same_state(tiny_encoder(0), mv2d3d.load(target))


def test_resave_replaces_model_files_keeps_others(tmp_path):
    target = tmp_path / "enc"
    save_pretrained(tiny_encoder(0), target)
    (target / "metrics.json").write_text("{}")
    save_pretrained(tiny_encoder(1), target)
    assert (target / "metrics.json").read_text() == "{}"
    assert_same_state(tiny_encoder(1), mv2d3d.load(target))


# -- cards -------------------------------------------------------------------------------------------


def _snippet(card_text: str) -> str:
    m = re.search(r"```python\n(.*?)```", card_text, re.S)
    assert m, "card has no python snippet"
    return m.group(1)


@pytest.mark.parametrize("kind", ["encoder", "classifier"])
def test_card_snippet_runs(tmp_path, monkeypatch, capsys, kind):
    model = tiny_encoder() if kind == "encoder" else tiny_classifier()
    monkeypatch.chdir(tmp_path)
    save_pretrained(model, "my-model")
    text = (tmp_path / "my-model" / "README.md").read_text()
    code = _snippet(text)
    assert '"my-model"' in code
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    if kind == "encoder":
        assert "torch.Size([2, 128])" in out and "torch.Size([2, 16, 64])" in out
    else:
        assert re.search(r"\['c\d', 'c\d'\]", out)


def test_card_metadata(tmp_path):
    from huggingface_hub import ModelCard

    clf = tiny_classifier()
    save_pretrained(
        clf, tmp_path / "clf", base_model="user/base-encoder", datasets=["modelnet40"], license="mit",
        metrics=[{"name": "overall accuracy", "type": "accuracy", "value": 0.875, "dataset": "modelnet40"}],
        command="mv2d3d finetune data/ --model user/base-encoder", notes="Trained on **toy** data.",
        tags=["custom-tag"],
    )
    card = ModelCard.load(tmp_path / "clf" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "mv2d3d" and data["license"] == "mit"
    assert {"point-cloud", "3d", "feature-extraction", "classification", "custom-tag"} <= set(data["tags"])
    assert data["base_model"] == "user/base-encoder" and data["datasets"] == ["modelnet40"]
    res = data["model-index"][0]["results"][0]
    assert res["metrics"][0]["value"] == 0.875 and res["dataset"]["name"] == "modelnet40"
    assert "Trained on **toy** data." in card.text and "c0, c1, c2, c3" in card.text
    # no metrics -> no model-index; an encoder is not tagged classification
    save_pretrained(tiny_encoder(), tmp_path / "enc")
    d2 = ModelCard.load(tmp_path / "enc" / "README.md").data.to_dict()
    assert "model-index" not in d2 and "classification" not in d2["tags"]
    # a local base (a folder path) is named in the text, not as the Hub's base_model id
    save_pretrained(tiny_classifier(), tmp_path / "clf2", base_model=str(tmp_path / "enc"))
    c2 = ModelCard.load(tmp_path / "clf2" / "README.md")
    assert "base_model" not in c2.data.to_dict() and str(tmp_path / "enc") in c2.text
    with pytest.raises(ConfigError, match="metrics"):
        save_pretrained(tiny_encoder(), tmp_path / "bad", metrics=[{"value": 1}])
    with pytest.raises(ConfigError, match="Unknown model card option"):
        save_pretrained(tiny_encoder(), tmp_path / "bad", licence="mit")


def test_every_zoo_entry_has_a_card_template():
    for name in mv2d3d.list_models():
        entry = mv2d3d.hub.get_entry(name)
        assert entry.card_path.is_file(), entry.card_path
    assert (registry.CARD_TEMPLATES_DIR / "generic.md").is_file()
