"""FPS and kNN timings and peak memory at N = 1k, 8k, 65k, 1M points.

Each case runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its
own; the baseline RSS after imports and after creating the input is printed too, so the
extra memory of the operation itself is ``peak - base``.

Cases: FPS N -> M = min(8192, N / 4) with mv2d3d's default backend ("auto": the fpsample
package's exact loop or its bucket FPS on CPU) and with the pure-torch loop (skipped at 1M
unless --torch-1m: about a minute); kNN grouping (64 FPS centres x 32 neighbours, as the
encoder groups); and every point's 16 neighbours among min(N, 1024) FPS samples (the
chunked query path, blocks of at most 2**24 distances).

    python benchmarks/bench_ops.py              # 2 threads
    python benchmarks/bench_ops.py --torch-1m   # include the ~1 min torch FPS at 1M
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SIZES = [1024, 8192, 65536, 1_000_000]


def run_case(kind: str, n: int, backend: str, threads: int) -> dict:
    import resource
    import time

    import torch

    from mv2d3d.ops import farthest_point_sample, gather_points, knn

    torch.set_num_threads(threads)
    pts = torch.rand(1, n, 3, generator=torch.Generator().manual_seed(0))
    warm = torch.rand(1, 256, 3)  # first-call costs (thread pool, MKL) are not the op's
    knn(warm, warm, 4), farthest_point_sample(warm, 8, backend=backend if kind == "fps" else "auto")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = min(8192, n // 4) if kind == "fps" else None
    t, c = time.perf_counter(), time.process_time()
    if kind == "fps":
        farthest_point_sample(pts, m, backend=backend)
        what = f"FPS {n} -> {m} ({backend})"
    elif kind == "knn_groups":
        centres = gather_points(pts, farthest_point_sample(pts, 64))
        t, c = time.perf_counter(), time.process_time()
        knn(centres, pts, 32)
        what = f"kNN 64 centres x 32 of {n}"
    else:  # every point's 16 neighbours among min(N, 1024) samples: chunked queries
        ref = gather_points(pts, farthest_point_sample(pts, min(n, 1024)))
        t, c = time.perf_counter(), time.process_time()
        knn(pts, ref, 16)
        what = f"kNN all {n} x 16 of {min(n, 1024)}"
    dt, dc = time.perf_counter() - t, time.process_time() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"what": what, "seconds": dt, "cpu_seconds": dc, "base_mb": base / 1024, "peak_mb": peak / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-1m", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    ap.add_argument("--no-torch", action="store_true", help="skip the pure-torch FPS loop")
    ap.add_argument("--case", nargs=3, metavar=("KIND", "N", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        kind, n, backend = args.case
        print(json.dumps(run_case(kind, int(n), backend, args.threads)))
        return
    print(f"threads {args.threads}, load avg {os.getloadavg()[0]:.2f}")
    # wall time suffers when other jobs share the CPU; CPU time (all threads) does less so
    print(f"{'case':<40} {'wall':>10} {'cpu':>10} {'base RSS':>10} {'peak RSS':>10} {'extra':>9}")
    cases = []
    for n in args.sizes:
        cases.append(("fps", n, "auto"))
        if not args.no_torch and (n < 1_000_000 or args.torch_1m):
            cases.append(("fps", n, "torch"))
        cases.append(("knn_groups", n, "-"))
        cases.append(("knn_all", n, "-"))
    for kind, n, backend in cases:
        res = subprocess.run(
            [sys.executable, __file__, "--threads", str(args.threads), "--case", kind, str(n), backend],
            capture_output=True, text=True,
        )
        if res.returncode:
            print(f"{kind} {n} {backend}: failed\n{res.stderr[-2000:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{r['what']:<40} {r['seconds'] * 1000:8.1f}ms {r['cpu_seconds'] * 1000:8.1f}ms {r['base_mb']:8.0f}MB {r['peak_mb']:8.0f}MB {r['peak_mb'] - r['base_mb']:7.0f}MB")
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
