"""PointEncoder computes the same function as the plain Point-MAE-style model of the
benchmark baseline (benchmarks/plain_point_mae.py: Conv1d mini-PointNet with BatchNorm and
the tiled 512-channel input, cdist+topk kNN, sequential FPS, attention written out), with
the same weights — so the optimised paths (folded BatchNorm, global half once per patch,
W_local W1 fold, fused attention) change no result."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mv2d3d import EncoderConfig, PointEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from plain_point_mae import MiniPointNet, PlainPointMAEEncoder, copy_from_encoder  # noqa: E402

from mv2d3d.models import PatchEmbed  # noqa: E402


def _randomise_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("grad", [False, True])
def test_patch_embed_matches_conv1d_reference(grad):
    torch.manual_seed(0)
    pe = PatchEmbed(96).eval()
    _randomise_bn(pe)
    ref = MiniPointNet(96).eval()
    ref.load_state_dict({k: v.unsqueeze(-1) if v.dim() == 2 else v for k, v in pe.state_dict().items()})
    # 300 patches: more than one chunk of the inference path (4096 rows / 32 = 128 patches)
    nb = torch.randn(3, 100, 32, 3) * 0.1
    with torch.set_grad_enabled(grad):
        got = pe(nb)
    torch.testing.assert_close(got.detach(), ref(nb).detach(), atol=2e-5, rtol=1e-5)


def test_encoder_matches_plain_point_mae_model():
    torch.manual_seed(0)
    cfg = EncoderConfig(embed_dim=96, depth=3, num_heads=3, num_points=512, num_groups=32, group_size=16,
                        normalize=False, fps_start="first", point_feature_layers=(2,))
    enc = PointEncoder(cfg).eval()
    _randomise_bn(enc)
    plain = copy_from_encoder(PlainPointMAEEncoder(96, 3, 3, 32, 16), enc).eval()
    x = torch.nn.functional.normalize(torch.randn(4, 512, 3), dim=-1) * torch.rand(4, 512, 1)
    with torch.no_grad():
        g, tokens, centers = plain(x)
        out = enc(x)
    torch.testing.assert_close(out.centers, centers, atol=0, rtol=0)
    torch.testing.assert_close(out.patch_features, tokens, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.global_features, g, atol=1e-4, rtol=1e-4)
