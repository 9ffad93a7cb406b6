"""Test-only: an independent re-implementation of the Point-MAE-family reference forward
pass, plus builders of random checkpoints in the reference layouts.

Nothing here imports mv2d3d. It is written from the operations of the reference code
(Point-MAE ``models/Point_MAE.py``: ``Group``, ``Encoder``, ``Attention``, ``Block``,
``MaskTransformer``, ``PointTransformer``; ACT ``models/act.py``
``VisableOnlyMaskTransformer``; ReCon ``models/transformer.py`` ``Block(with_contrast=True)``
and ``models/ReCon.py`` ``MaskTransformer``; the ``pointnet2_ops`` CUDA FPS kernel) and works
directly on a state dict in the reference layout: Conv1d kernels stay [out, in, 1] and run
through ``F.conv1d``, attention is written out, grouping uses exact pairwise differences.

Evaluation pipeline reproduced (``tools/runner_finetune.py: validate``)::

    points = misc.fps(points, npoints)     # pointnet2_ops FPS on the input cloud
    out = model(points)                     # Group: FPS centres + kNN, then the network

Shapes:
    B: batch, N: points, G: groups, K: group size, C: width, L: classes.
"""

from __future__ import annotations

import re
from typing import Dict, List

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


# -- geometry --------------------------------------------------------------------------------
def fps_pointnet2_ops(xyz: Tensor, m: int) -> Tensor:
    """``pointnet2_ops.furthest_point_sample``: the CUDA kernel's rules, one cloud at a time.

    First index 0; running distances start at 1e10; points with x*x+y*y+z*z <= 1e-3 are
    skipped (never updated, never selected); the next index is the lowest index holding the
    largest running distance (strict '>' scan), or 0 when every point is skipped.

    Shapes: xyz [B, N, 3] -> [B, m] int64
    """
    out = []
    for b in range(xyz.shape[0]):
        p = xyz[b].float()
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        skip = ((x * x) + (y * y) + (z * z)) <= 1e-3
        temp = torch.full((p.shape[0],), 1e10)
        idx = [0]
        old = 0
        for _ in range(1, m):
            x1, y1, z1 = p[old, 0], p[old, 1], p[old, 2]
            d = (x - x1) * (x - x1) + (y - y1) * (y - y1) + (z - z1) * (z - z1)
            temp = torch.where(skip, temp, torch.minimum(d, temp))
            live = (~skip).nonzero().flatten()
            if len(live) == 0:
                old = 0
            else:
                vals = temp[live]
                best = vals.max()
                old = int(live[(vals == best).nonzero()[0, 0]])
            idx.append(old)
        out.append(torch.tensor(idx, dtype=torch.long))
    return torch.stack(out)


def gather(xyz: Tensor, idx: Tensor) -> Tensor:
    """Shapes: xyz [B, N, 3], idx [B, M] -> [B, M, 3]"""
    return torch.stack([xyz[b, idx[b]] for b in range(xyz.shape[0])])


def group(xyz: Tensor, num_group: int, group_size: int):
    """``Group``: FPS centres, the k nearest points of each (exact distances), relative to it.

    Shapes: xyz [B, N, 3] -> (neighborhood [B, G, K, 3], center [B, G, 3])
    """
    center = gather(xyz, fps_pointnet2_ops(xyz, num_group))
    diff = center[:, :, None, :] - xyz[:, None, :, :]  # B G N 3
    dist = (diff * diff).sum(-1)
    idx = torch.argsort(dist, dim=-1, stable=True)[..., :group_size]  # B G K
    nb = torch.stack([xyz[b][idx[b]] for b in range(xyz.shape[0])])  # B G K 3
    return nb - center.unsqueeze(2), center


# -- network pieces --------------------------------------------------------------------------
def _bn(x: Tensor, sd: Dict[str, Tensor], p: str) -> Tensor:
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], False, 0.0, 1e-5)


def mini_pointnet(sd: Dict[str, Tensor], p: str, nb: Tensor) -> Tensor:
    """``Encoder``: Conv1d mini-PointNet. Shapes: nb [B, G, K, 3] -> [B, G, C]"""
    B, G, K, _ = nb.shape
    x = nb.reshape(B * G, K, 3).transpose(2, 1)  # BG 3 K
    f = F.conv1d(x, sd[p + "first_conv.0.weight"], sd[p + "first_conv.0.bias"])
    f = F.relu(_bn(f, sd, p + "first_conv.1."))
    f = F.conv1d(f, sd[p + "first_conv.3.weight"], sd[p + "first_conv.3.bias"])  # BG 256 K
    g = torch.max(f, dim=2, keepdim=True)[0]
    f = torch.cat([g.expand(-1, -1, K), f], dim=1)  # BG 512 K
    f = F.conv1d(f, sd[p + "second_conv.0.weight"], sd[p + "second_conv.0.bias"])
    f = F.relu(_bn(f, sd, p + "second_conv.1."))
    f = F.conv1d(f, sd[p + "second_conv.3.weight"], sd[p + "second_conv.3.bias"])
    return torch.max(f, dim=2)[0].reshape(B, G, -1)


def _ln(x: Tensor, sd: Dict[str, Tensor], p: str) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[p + "weight"], sd[p + "bias"], 1e-5)


def _mlp(x: Tensor, sd: Dict[str, Tensor], p: str) -> Tensor:
    return F.linear(F.gelu(F.linear(x, sd[p + "fc1.weight"], sd[p + "fc1.bias"])), sd[p + "fc2.weight"], sd[p + "fc2.bias"])


def attention(x: Tensor, sd: Dict[str, Tensor], p: str, heads: int) -> Tensor:
    """``Attention`` (qkv without bias). Shapes: [B, T, C] -> [B, T, C]"""
    B, T, C = x.shape
    qkv = (x @ sd[p + "qkv.weight"].t()).reshape(B, T, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = (q @ k.transpose(-2, -1)) * (C // heads) ** -0.5
    a = a.softmax(dim=-1)
    y = (a @ v).transpose(1, 2).reshape(B, T, C)
    return F.linear(y, sd[p + "proj.weight"], sd[p + "proj.bias"])


def cross_attention(x: Tensor, y: Tensor, sd: Dict[str, Tensor], p: str, heads: int) -> Tensor:
    """ReCon ``CrossAttention``: queries from x, keys/values from y."""
    B, Ty, C = y.shape
    kv = (y @ sd[p + "kv.weight"].t()).reshape(B, Ty, 2, heads, C // heads).permute(2, 0, 3, 1, 4)
    k, v = kv[0], kv[1]
    Tx = x.shape[1]
    q = (x @ sd[p + "q.weight"].t()).reshape(B, Tx, heads, C // heads).permute(0, 2, 1, 3)
    a = ((q @ k.transpose(-2, -1)) * (C // heads) ** -0.5).softmax(dim=-1)
    return F.linear((a @ v).transpose(1, 2).reshape(B, Tx, C), sd[p + "proj.weight"], sd[p + "proj.bias"])


def block(x: Tensor, sd: Dict[str, Tensor], p: str, heads: int) -> Tensor:
    """Pre-norm ``Block``."""
    x = x + attention(_ln(x, sd, p + "norm1."), sd, p + "attn.", heads)
    return x + _mlp(_ln(x, sd, p + "norm2."), sd, p + "mlp.")


def recon_block(x: Tensor, sd: Dict[str, Tensor], p: str, heads: int) -> Tensor:
    """ReCon ``Block(with_contrast=True)``: 3 global tokens, then the patch tokens."""
    cls, vis = x[:, :3], x[:, 3:]
    cls = _ln(cls, sd, p + "norm1_contrast.")
    vis = _ln(vis, sd, p + "norm1.")
    cls = cls + cross_attention(cls, vis, sd, p + "attn_contrast.", heads)
    vis = vis + attention(vis, sd, p + "attn.", heads)
    cls = _ln(cls, sd, p + "norm2_contrast.")
    vis = _ln(vis, sd, p + "norm2.")
    cls = cls + _mlp(cls, sd, p + "mlp_contrast.")
    vis = vis + _mlp(vis, sd, p + "mlp.")
    return torch.cat([cls, vis], dim=1)


def _depth(sd: Dict[str, Tensor], p: str) -> int:
    pat = re.compile(re.escape(p + "blocks.blocks.") + r"(\d+)\.")
    return len({m.group(1) for k in sd if (m := pat.match(k))})


def _pos(sd: Dict[str, Tensor], p: str, center: Tensor) -> Tensor:
    h = F.gelu(F.linear(center, sd[p + "pos_embed.0.weight"], sd[p + "pos_embed.0.bias"]))
    return F.linear(h, sd[p + "pos_embed.2.weight"], sd[p + "pos_embed.2.bias"])


def _strip(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    return {k.replace("module.", ""): v.float() if v.is_floating_point() else v for k, v in sd.items()}


# -- whole models ----------------------------------------------------------------------------
@torch.no_grad()
def reference_forward(
    state_dict: Dict[str, Tensor],
    points: Tensor,
    *,
    kind: str,
    num_heads: int,
    num_group: int,
    group_size: int,
    npoints: int,
) -> Dict[str, Tensor]:
    """The reference evaluation forward pass.

    Args:
        kind: ``"point-mae-pretrain"`` (``MAE_encoder(..., noaug=True)``: all tokens
            visible), ``"finetune"`` (``PointTransformer`` logits), ``"act-pretrain"``
            (``ACT_encoder(..., noaug=True)``) or ``"recon-pretrain"`` (ReCon
            ``MAE_encoder`` with no mask).

    Returns:
        {"center": [B, G, 3], "tokens": [B, G, C] (final normed patch tokens),
        "logits": [B, L] for "finetune"}
    """
    sd = _strip(state_dict)
    pts = gather(points.float(), fps_pointnet2_ops(points.float(), npoints))  # misc.fps(points, npoints)
    nb, center = group(pts, num_group, group_size)
    B = pts.shape[0]
    p = {"point-mae-pretrain": "MAE_encoder.", "recon-pretrain": "MAE_encoder.", "act-pretrain": "ACT_encoder.", "finetune": ""}[kind]
    tok = mini_pointnet(sd, p + "encoder.", nb)
    pos = _pos(sd, p, center)
    n_glob = 0
    if kind in ("finetune", "act-pretrain"):
        tok = torch.cat([sd[p + "cls_token"].expand(B, -1, -1), tok], 1)
        pos = torch.cat([sd[p + "cls_pos"].expand(B, -1, -1), pos], 1)
        n_glob = 1
    elif kind == "recon-pretrain":
        tok = torch.cat([sd[p + n].expand(B, -1, -1) for n in ("cls_token", "img_token", "text_token")] + [tok], 1)
        pos = torch.cat([sd[p + n].expand(B, -1, -1) for n in ("cls_pos", "img_pos", "text_pos")] + [pos], 1)
        n_glob = 3
    x = tok
    for i in range(_depth(sd, p)):
        f = recon_block if kind == "recon-pretrain" else block
        x = f(x + pos, sd, f"{p}blocks.blocks.{i}.", num_heads)
    x = _ln(x, sd, p + "norm.")
    out = {"center": center, "tokens": x[:, n_glob:]}
    if kind == "finetune":
        h = torch.cat([x[:, 0], x[:, 1:].max(1)[0]], dim=-1)
        j = 0
        while f"cls_head_finetune.{j + 4}.weight" in sd:  # Linear, BN, ReLU, Dropout (eval: identity)
            h = F.relu(_bn(F.linear(h, sd[f"cls_head_finetune.{j}.weight"], sd[f"cls_head_finetune.{j}.bias"]), sd, f"cls_head_finetune.{j + 1}."))
            j += 4
        out["logits"] = F.linear(h, sd[f"cls_head_finetune.{j}.weight"], sd[f"cls_head_finetune.{j}.bias"])
    return out


# -- random checkpoints in the reference layouts ---------------------------------------------
class _Filler:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape: int, std: float = 1.0) -> Tensor:
        return torch.randn(*shape, generator=self.g) * std

    def linear(self, sd: Dict[str, Tensor], p: str, out: int, inp: int, *, bias: bool = True, conv: bool = False) -> None:
        w = self.randn(out, inp, std=inp ** -0.5)
        sd[p + "weight"] = w.unsqueeze(-1) if conv else w
        if bias:
            sd[p + "bias"] = self.randn(out, std=0.1)

    def bn(self, sd: Dict[str, Tensor], p: str, n: int) -> None:
        sd[p + "weight"] = 1 + self.randn(n, std=0.1)
        sd[p + "bias"] = self.randn(n, std=0.1)
        sd[p + "running_mean"] = self.randn(n, std=0.1)
        sd[p + "running_var"] = 0.5 + torch.rand(n, generator=self.g)
        sd[p + "num_batches_tracked"] = torch.tensor(1000)

    def ln(self, sd: Dict[str, Tensor], p: str, n: int) -> None:
        sd[p + "weight"] = 1 + self.randn(n, std=0.1)
        sd[p + "bias"] = self.randn(n, std=0.1)


def _encoder(f: _Filler, sd: Dict[str, Tensor], p: str, C: int) -> None:
    # Encoder (mini-PointNet): Conv1d(3,128,1) BN ReLU Conv1d(128,256,1) | Conv1d(512,512,1) BN ReLU Conv1d(512,C,1)
    f.linear(sd, p + "encoder.first_conv.0.", 128, 3, conv=True)
    f.bn(sd, p + "encoder.first_conv.1.", 128)
    f.linear(sd, p + "encoder.first_conv.3.", 256, 128, conv=True)
    f.linear(sd, p + "encoder.second_conv.0.", 512, 512, conv=True)
    f.bn(sd, p + "encoder.second_conv.1.", 512)
    f.linear(sd, p + "encoder.second_conv.3.", C, 512, conv=True)


def _pos_embed(f: _Filler, sd: Dict[str, Tensor], p: str, C: int) -> None:
    f.linear(sd, p + "0.", 128, 3)
    f.linear(sd, p + "2.", C, 128)


def _blocks(f: _Filler, sd: Dict[str, Tensor], p: str, C: int, depth: int, *, contrast: bool = False) -> None:
    for i in range(depth):
        b = f"{p}blocks.{i}."
        f.ln(sd, b + "norm1.", C)
        f.ln(sd, b + "norm2.", C)
        f.linear(sd, b + "mlp.fc1.", 4 * C, C)
        f.linear(sd, b + "mlp.fc2.", C, 4 * C)
        f.linear(sd, b + "attn.qkv.", 3 * C, C, bias=False)
        f.linear(sd, b + "attn.proj.", C, C)
        if contrast:
            f.ln(sd, b + "norm1_contrast.", C)
            f.ln(sd, b + "norm2_contrast.", C)
            f.linear(sd, b + "mlp_contrast.fc1.", 4 * C, C)
            f.linear(sd, b + "mlp_contrast.fc2.", C, 4 * C)
            f.linear(sd, b + "attn_contrast.q.", C, C, bias=False)
            f.linear(sd, b + "attn_contrast.kv.", 2 * C, C, bias=False)
            f.linear(sd, b + "attn_contrast.proj.", C, C)


def point_mae_pretrain_state_dict(C: int = 64, depth: int = 2, group_size: int = 16, decoder_depth: int = 1, seed: int = 0) -> Dict[str, Tensor]:
    """``Point_MAE.state_dict()`` (cfgs/pretrain.yaml layout, small widths)."""
    f = _Filler(seed)
    sd: Dict[str, Tensor] = {}
    _encoder(f, sd, "MAE_encoder.", C)
    _pos_embed(f, sd, "MAE_encoder.pos_embed.", C)
    _blocks(f, sd, "MAE_encoder.blocks.", C, depth)
    f.ln(sd, "MAE_encoder.norm.", C)
    sd["mask_token"] = f.randn(1, 1, C, std=0.02)
    _pos_embed(f, sd, "decoder_pos_embed.", C)
    _blocks(f, sd, "MAE_decoder.blocks.", C, decoder_depth)
    f.ln(sd, "MAE_decoder.norm.", C)
    f.linear(sd, "increase_dim.0.", 3 * group_size, C, conv=True)
    return sd


def finetune_state_dict(C: int = 64, depth: int = 2, num_classes: int = 40, hidden: List[int] = (256, 256), seed: int = 1) -> Dict[str, Tensor]:
    """``PointTransformer.state_dict()`` (Point-MAE / ACT fine-tuned classifier)."""
    f = _Filler(seed)
    sd: Dict[str, Tensor] = {}
    _encoder(f, sd, "", C)
    sd["cls_token"] = f.randn(1, 1, C, std=0.5)
    sd["cls_pos"] = f.randn(1, 1, C, std=0.5)
    _pos_embed(f, sd, "pos_embed.", C)
    _blocks(f, sd, "blocks.", C, depth)
    f.ln(sd, "norm.", C)
    d, j = 2 * C, 0
    for h in hidden:
        f.linear(sd, f"cls_head_finetune.{j}.", h, d)
        f.bn(sd, f"cls_head_finetune.{j + 1}.", h)
        d, j = h, j + 4
    f.linear(sd, f"cls_head_finetune.{j}.", num_classes, d)
    return sd


def act_pretrain_state_dict(C: int = 64, depth: int = 2, seed: int = 2) -> Dict[str, Tensor]:
    """``ACT_PointDistillation.state_dict()``; the dVAE teacher is represented by a few of its tensors."""
    f = _Filler(seed)
    sd: Dict[str, Tensor] = {}
    p = "ACT_encoder."
    _encoder(f, sd, p, C)
    sd[p + "cls_token"] = f.randn(1, 1, C, std=0.5)
    sd[p + "cls_pos"] = f.randn(1, 1, C, std=0.5)
    _pos_embed(f, sd, p + "pos_embed.", C)
    _blocks(f, sd, p + "blocks.", C, depth)
    f.ln(sd, p + "norm.", C)
    f.linear(sd, p + "lm_head.", 32, C)
    f.linear(sd, p + "cls_head.0.", 16, C)
    f.linear(sd, p + "cls_head.2.", 16, 16)
    _encoder(f, sd, "dvae_tokenizer.", C)
    f.linear(sd, "dvae_tokenizer.visual_embed.head.", 8, C)
    f.linear(sd, "proj_head.", C, C)
    sd["mask_token"] = f.randn(1, 1, C, std=0.02)
    _pos_embed(f, sd, "decoder_pos_embed.", C)
    _blocks(f, sd, "ACT_decoder.blocks.", C, 1)
    f.ln(sd, "ACT_decoder.norm.", C)
    return sd


def recon_pretrain_state_dict(C: int = 64, depth: int = 2, group_size: int = 16, seed: int = 3) -> Dict[str, Tensor]:
    """``ReCon.state_dict()``; the frozen image/text encoders are represented by a few tensors."""
    f = _Filler(seed)
    sd: Dict[str, Tensor] = {}
    p = "MAE_encoder."
    _encoder(f, sd, p, C)
    for n in ("cls_token", "cls_pos", "img_token", "text_token", "img_pos", "text_pos"):
        sd[p + n] = f.randn(1, 1, C, std=0.5)
    _pos_embed(f, sd, p + "pos_embed.", C)
    _blocks(f, sd, p + "blocks.", C, depth, contrast=True)
    f.ln(sd, p + "norm.", C)
    sd["mask_token"] = f.randn(1, 1, C, std=0.02)
    _pos_embed(f, sd, "decoder_pos_embed.", C)
    _blocks(f, sd, "MAE_decoder.blocks.", C, 1)
    f.ln(sd, "MAE_decoder.norm.", C)
    f.linear(sd, "increase_dim.0.", 3 * group_size, C, conv=True)
    f.linear(sd, "img_encoder.proj.", 12, 12)
    f.linear(sd, "text_encoder.token_embedding.", 12, 12)
    f.linear(sd, "img_proj.", 12, C)
    f.linear(sd, "text_proj.", 12, C)
    return sd


def save_reference_checkpoint(sd: Dict[str, Tensor], path, *, data_parallel: bool = False, epoch: int = 299) -> None:
    """Save like ``tools/builder.py: save_checkpoint`` (``module.`` keys under DataParallel)."""
    if data_parallel:
        sd = {"module." + k: v for k, v in sd.items()}
    first = next(iter(sd.values()))
    torch.save(
        {
            "base_model": sd,
            "optimizer": {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(first)}}, "param_groups": [{"lr": 1e-4, "weight_decay": 0.05, "params": [0]}]},
            "epoch": epoch,
            "metrics": {"acc": torch.tensor(92.5)},
            "best_metrics": {"acc": torch.tensor(93.1)},
        },
        path,
    )


def cloud(batch: int, n: int, seed: int = 0, near_origin: int = 0) -> Tensor:
    """Random clouds in [-1, 1]^3; ``near_origin`` points per cloud placed within 0.02 of the
    origin, where the reference FPS never picks centres. Shapes: -> [B, N, 3]"""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(batch, n, 3, generator=g) * 2 - 1
    if near_origin:
        idx = torch.randperm(n - 1, generator=g)[:near_origin] + 1  # keep point 0 (the FPS start) as is
        pts[:, idx] = (torch.rand(batch, near_origin, 3, generator=g) * 2 - 1) * 0.011
    return pts
