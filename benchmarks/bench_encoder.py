"""Encoder throughput (clouds/s) against the plain Point-MAE-style baseline, same run.

For tiny and base: the plain fp32 model (benchmarks/plain_point_mae.py, same width/depth,
same weights), ``mv2d3d.load(name, pretrained=False)`` in fp32, and the same model loaded
with ``dtype=torch.bfloat16``. Prints clouds/s, each as a ratio against the plain model, and
the cosine similarity of bf16 vs fp32 global features (and plain vs fp32 as a sanity check).

Timing rounds of the three models are interleaved, and the best round of each is kept, so
that the ratios stay meaningful on a CPU shared with other jobs.

    python benchmarks/bench_encoder.py                    # batch 32, 1024 points, 2 threads
    python benchmarks/bench_encoder.py --models mv-m3ae-tiny --rounds 5
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from plain_point_mae import PlainPointMAEEncoder, copy_from_encoder  # noqa: E402


def _cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return " ".join(have) or "none of avx2/avx512/amx"


def _time(fn, x, iters: int):
    # wall time, and process CPU time (all threads): the latter is less sensitive to other
    # jobs taking the cores, though OpenMP threads spinning at barriers still count
    t, c = time.perf_counter(), time.process_time()
    for _ in range(iters):
        fn(x)
    return (time.perf_counter() - t) / iters, (time.process_time() - c) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mv-m3ae-tiny", "mv-m3ae-base"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best kept)")
    ap.add_argument("--iters", type=int, default=3, help="forward passes per round")
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args()

    import mv2d3d

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, cpu flags: {_cpu_flags()}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}, "
          f"load avg {os.getloadavg()[0]:.2f}")
    # a cloud batch in the unit sphere (Point-MAE's data is normalised that way)
    pts = F.normalize(torch.randn(args.batch, args.points, 3), dim=-1) * torch.rand(args.batch, args.points, 1) ** (1 / 3)

    for name in args.models:
        enc = mv2d3d.load(name, pretrained=False)
        cfg = enc.config
        plain = PlainPointMAEEncoder(cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.num_groups, cfg.group_size, cfg.mlp_ratio)
        copy_from_encoder(plain, enc).eval()
        models = {"plain fp32": lambda x: plain(x)[0], "mv2d3d fp32": lambda x: enc(x).global_features}
        if not args.no_bf16:
            enc16 = mv2d3d.load(name, pretrained=False, dtype=torch.bfloat16)
            enc16.load_state_dict(enc.state_dict())
            models["mv2d3d bf16"] = lambda x: enc16(x).global_features
        best = {k: float("inf") for k in models}
        best_cpu = {k: float("inf") for k in models}
        with torch.inference_mode():
            feats = {k: f(pts).float() for k, f in models.items()}  # warm-up + outputs
            for _ in range(args.rounds):
                for k, f in models.items():
                    wall, cpu = _time(f, pts, args.iters)
                    best[k], best_cpu[k] = min(best[k], wall), min(best_cpu[k], cpu)
        base = args.batch / best["plain fp32"]
        print(f"\n{name} (C={cfg.embed_dim} x {cfg.depth}, G={cfg.num_groups}x{cfg.group_size}), batch {args.batch} x {args.points} points:")
        for k in models:
            rate = args.batch / best[k]
            print(f"  {k:<12} {rate:8.1f} clouds/s   {rate / base:5.2f}x plain   ({best[k] * 1000:.0f} ms/batch;"
                  f" CPU time {best_cpu[k] * 1000:.0f} ms/batch = {best_cpu['plain fp32'] / best_cpu[k]:.2f}x plain)")
        ref = feats["mv2d3d fp32"]
        if "mv2d3d bf16" in feats:
            cos = F.cosine_similarity(feats["mv2d3d bf16"], ref, dim=-1)
            print(f"  cosine bf16 vs fp32 global features: min {cos.min():.5f}, mean {cos.mean():.5f}")
    print(f"\nload avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
