"""Pretraining step time and peak memory on this machine: a plain Point-MAE step vs ours.

Cases (batch 32 x 1024 points, AdamW step included), for the tiny and the base encoder:

* ``baseline``: the Point-MAE Chamfer-only pretraining step written plainly (this file):
  sequential FPS loop, cdist+topk grouping, Conv1d mini-PointNet over *all* 64 patches,
  per-sample random masks with NumPy, written-out attention, the 4-block decoder over
  visible + mask tokens, Chamfer-L2 with ``torch.cdist``; fp32.
* ``ours-chamfer``: :class:`mv2d3d.pretrain.model.PretrainModel` with the 2D losses off, fp32.
* ``ours-chamfer-bf16``: the same under ``torch.autocast(bfloat16)``.
* ``ours-full``: both heads (Chamfer + 3D-to-2D + global term) with cached teacher features
  (the per-cloud feature maps are read from memory, as the feature cache does), fp32.
* ``ours-full-live``: both heads with the teacher live (render + frozen teacher each step).

Each case runs in its own subprocess so its peak RSS (``ru_maxrss``) is its own. The
decoder of ``baseline`` and ours has the same width/depth (the recipe's), so only the
implementation differs.

    OMP_NUM_THREADS=2 python benchmarks/bench_pretrain.py                 # all cases
    python benchmarks/bench_pretrain.py --sizes base --steps 4 --cases baseline ours-chamfer

Also prints the renderer's time for 32 clouds x 6 views (128 px and 224 px).
The CPU may be shared: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from plain_point_mae import Block, MiniPointNet, group  # noqa: E402  (the plain encoder pieces)

SIZES = {
    # encoder (embed, depth, heads), decoder (dim, depth, heads), recipe
    "tiny": dict(embed=192, depth=6, heads=3, dec_dim=192, dec_depth=2, dec_heads=3, recipe="tiny-procedural-cpu"),
    "base": dict(embed=384, depth=12, heads=6, dec_dim=384, dec_depth=4, dec_heads=6, recipe="base-shapenet55"),
}
CASES = ["baseline", "ours-chamfer", "ours-chamfer-bf16", "ours-full", "ours-full-live"]
B, N, G, K, RATIO = 32, 1024, 64, 32, 0.6


# -- the plain baseline --------------------------------------------------------------------------
def chamfer_plain(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(a, b) ** 2
    return d.min(2)[0].mean() + d.min(1)[0].mean()


class PlainPointMAEPretrain(nn.Module):
    """Point-MAE's pretraining model (Chamfer only), written plainly."""

    def __init__(self, embed: int, depth: int, heads: int, dec_dim: int, dec_depth: int, dec_heads: int):
        super().__init__()
        self.encoder = MiniPointNet(embed)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, embed))
        self.blocks = nn.ModuleList(Block(embed, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed)
        self.decoder_embed = nn.Linear(embed, dec_dim) if dec_dim != embed else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dec_dim))
        self.decoder_blocks = nn.ModuleList(Block(dec_dim, dec_heads) for _ in range(dec_depth))
        self.decoder_norm = nn.LayerNorm(dec_dim)
        self.increase_dim = nn.Conv1d(dec_dim, 3 * K, 1)

    def mask(self, Bn: int) -> torch.Tensor:
        num = int(RATIO * G)
        m = np.zeros((Bn, G), dtype=bool)
        for i in range(Bn):
            row = np.hstack([np.zeros(G - num), np.ones(num)])
            np.random.shuffle(row)
            m[i] = row
        return torch.from_numpy(m)

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        nb, center = group(pts, G, K)
        mask = self.mask(pts.shape[0])
        tokens = self.encoder(nb)  # every patch embedded, as the reference does
        Bn, _, C = tokens.shape
        x_vis = tokens[~mask].reshape(Bn, -1, C)
        pos = self.pos_embed(center[~mask].reshape(Bn, -1, 3))
        for blk in self.blocks:
            x_vis = blk(x_vis + pos)
        x_vis = self.decoder_embed(self.norm(x_vis))
        pos_vis = self.decoder_pos_embed(center[~mask].reshape(Bn, -1, 3))
        pos_mask = self.decoder_pos_embed(center[mask].reshape(Bn, -1, 3))
        M = pos_mask.shape[1]
        x = torch.cat([x_vis, self.mask_token.expand(Bn, M, -1)], dim=1)
        p = torch.cat([pos_vis, pos_mask], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x + p)
        x = self.decoder_norm(x[:, -M:])
        rebuilt = self.increase_dim(x.transpose(1, 2)).transpose(1, 2).reshape(Bn * M, -1, 3)
        gt = nb[mask].reshape(Bn * M, -1, 3)
        return chamfer_plain(rebuilt, gt)


# -- one case, in this process --------------------------------------------------------------------
def _rss_mb() -> float:
    # VmHWM (peak RSS of this process image); ru_maxrss would carry the parent's peak over exec
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(size: str, case: str, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    np.random.seed(0)
    s = SIZES[size]
    pts = torch.from_numpy(np.random.default_rng(0).standard_normal((B, N, 3)).astype(np.float32))
    pts = pts / pts.norm(dim=-1).amax(1).view(B, 1, 1)
    rss0 = _rss_mb()
    if case == "baseline":
        model = PlainPointMAEPretrain(s["embed"], s["depth"], s["heads"], s["dec_dim"], s["dec_depth"], s["dec_heads"])
        params = list(model.parameters())

        def step():
            return model(pts)
    else:
        from mv2d3d.pretrain.config import apply_overrides, load_recipe
        from mv2d3d.pretrain.model import PretrainModel

        cfg = load_recipe(s["recipe"])
        ov = [f"heads.decoder_dim={s['dec_dim']}", f"heads.decoder_depth={s['dec_depth']}", f"heads.decoder_heads={s['dec_heads']}"]
        if case.startswith("ours-chamfer"):
            ov += ["loss.w2d=0", "loss.w_global=0"]
        cfg = apply_overrides(cfg, ov)
        maps = pooled = None
        view_teacher = None
        grid, tdim, V = None, 0, len(cfg.render.views)
        if case.startswith("ours-full"):
            from mv2d3d.pretrain.config import TeacherConfig
            from mv2d3d.pretrain.teacher import ViewTeacher

            # the recipe's teacher architecture with random weights (no download here)
            tcfg = TeacherConfig(**{**cfg.teacher.__dict__, "weights": "random" if cfg.teacher.weights == "hub" else cfg.teacher.weights})
            view_teacher = ViewTeacher(tcfg, cfg.render)
            grid, tdim = view_teacher.teacher.grid, view_teacher.teacher.dim
            if case == "ours-full":
                cache = torch.randn(B, V, grid[0] * grid[1], tdim).half()  # what the feature cache holds
                cache_pooled = torch.randn(B, V, tdim).half()
                view_teacher = None
        model = PretrainModel(cfg, grid, tdim, V)
        params = list(model.parameters())
        amp = case.endswith("bf16")

        def step():
            noise = torch.rand(B, G)
            if case == "ours-full":
                m, p = cache.float(), cache_pooled.float()
            elif view_teacher is not None:
                m, p = view_teacher(pts)
            else:
                m = p = None
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss, _ = model(pts, noise, m, p)
            return loss

    model.train()
    opt = torch.optim.AdamW(params, lr=1e-4)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = step()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"size": size, "case": case, "step_s": statistics.median(times), "steps": times,
            "peak_rss_mb": _rss_mb(), "rss_before_mb": rss0, "loss": float(loss)}


def bench_render() -> list:
    from mv2d3d.pretrain.render import DEFAULT_VIEWS, render_depth

    pts = torch.rand(32, 2048, 3)
    out = []
    for res in (128, 224):
        render_depth(pts, DEFAULT_VIEWS, res)
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            render_depth(pts, DEFAULT_VIEWS, res)
            ts.append(time.perf_counter() - t0)
        out.append((res, statistics.median(ts)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=list(SIZES))
    ap.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--one", nargs=2, metavar=("SIZE", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one[0], args.one[1], args.steps, args.warmup)))
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average before: {os.getloadavg()}")
    for res, t in bench_render():
        print(f"renderer: 32 clouds x 2048 points x 6 views at {res} px: {t * 1000:.1f} ms")
    results = {}
    for size in args.sizes:
        for case in args.cases:
            r = subprocess.run([sys.executable, __file__, "--one", size, case, "--steps", str(args.steps), "--warmup", str(args.warmup)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{size} {case}: FAILED\n{r.stderr[-2000:]}")
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            results[(size, case)] = res
            print(f"{size:<5} {case:<18} step {res['step_s']:.3f} s (median of {len(res['steps'])}: "
                  f"{', '.join(f'{t:.2f}' for t in res['steps'])})  peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print("\n| size | case | step (s) | speed-up vs baseline | vs ours-chamfer | peak RSS (MB) | RSS vs baseline |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (size, case), r in results.items():
        base = results.get((size, "baseline"))
        ch = results.get((size, "ours-chamfer"))
        sp = f"{base['step_s'] / r['step_s']:.2f}x" if base else "-"
        rel = f"{r['step_s'] / ch['step_s']:.2f}x" if ch else "-"
        mem = f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}" if base else "-"
        print(f"| {size} | {case} | {r['step_s']:.3f} | {sp} | {rel} | {r['peak_rss_mb']:.0f} | {mem} |")


if __name__ == "__main__":
    main()
