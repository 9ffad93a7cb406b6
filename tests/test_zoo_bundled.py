"""The pretrained mv-m3ae-tiny that ships inside the package."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mv2d3d
from mv2d3d.data.procedural import generate_shape
from mv2d3d.hub.registry import get_entry


def test_tiny_is_bundled_and_pinned():
    entry = get_entry("mv-m3ae-tiny")
    assert entry.bundled and entry.has_weights
    folder = entry.bundled_path
    for name, digest in entry.sha256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert set(entry.sha256) == {"config.json", "model.safetensors"}
    assert "mv-m3ae-tiny" in mv2d3d.list_models(pretrained=True)


def test_tiny_loads_offline_with_trained_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = mv2d3d.load("mv-m3ae-tiny")
    rand = mv2d3d.load("mv-m3ae-tiny", pretrained=False)
    assert not enc.training
    # the bundled weights are not an initialisation: they differ from a fresh architecture
    w, r = enc.blocks[0].attn.qkv.weight, rand.blocks[0].attn.qkv.weight
    assert not torch.allclose(w, r)
    cfg = json.loads((get_entry("mv-m3ae-tiny").bundled_path / "config.json").read_text())
    assert cfg["architecture"] == "PointEncoder" and cfg["embed_dim"] == enc.config.embed_dim


def test_tiny_golden_output():
    """Regression guard: the shipped encoder's features of one fixed shape (recorded when the
    weights were bundled; re-record only together with new weights)."""
    golden = Path(__file__).parent / "golden_tiny.json"
    data = json.loads(golden.read_text())
    enc = mv2d3d.load("mv-m3ae-tiny")
    pts = torch.from_numpy(generate_shape(data["family"], 1024, seed=data["seed"]))
    with torch.inference_mode():
        g = enc(pts).global_features
    np.testing.assert_allclose(g[: len(data["global_head"])].numpy(), data["global_head"], atol=1e-4)
    assert float(g.norm()) == pytest.approx(data["global_norm"], rel=1e-4)
