"""`import mv2d3d` stays light: no trimesh, sklearn, matplotlib, trainer — and no timm
(timm pulls in torchvision and torch._dynamo, ~3 s; it is imported when a model is built)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["trimesh", "sklearn", "matplotlib", "mv2d3d.train", "mv2d3d.pretrain", "timm", "torchvision", "h5py"]


def test_import_mv2d3d_stays_light():
    code = (
        "import json, sys, mv2d3d; "
        f"print(json.dumps(sorted({{m for m in sys.modules for h in {HEAVY!r} if m == h or m.startswith(h + '.')}})))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert not loaded, f"import mv2d3d pulled in {loaded}"


def test_public_api_is_reachable():
    import mv2d3d

    assert {"load", "list_models", "PointEncoder", "EncoderOutput"} <= set(mv2d3d.__all__)
    assert "mv-m3ae-tiny" in mv2d3d.list_models()
    assert callable(mv2d3d.ops.farthest_point_sample)
