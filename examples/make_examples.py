"""Regenerate the example clouds in this folder from mv2d3d's procedural shape generator.

    python examples/make_examples.py

Two shapes each of six families, 1,024 points each, in three file formats (.ply, .xyz,
.npy) so that the README's first command also shows mixed-format reading.
"""

from pathlib import Path

import numpy as np

from mv2d3d.data.procedural import generate_shape

FAMILIES = ["airplane", "chair", "lamp", "mug", "table", "tree"]
HERE = Path(__file__).parent


def main() -> None:
    import trimesh

    for fi, fam in enumerate(FAMILIES):
        for k in range(2):
            pts = generate_shape(fam, 1024, seed=1000 + 10 * fi + k)
            kind = (fi + k) % 3
            if kind == 0:
                trimesh.PointCloud(pts).export(HERE / f"{fam}_{k + 1}.ply")
            elif kind == 1:
                np.savetxt(HERE / f"{fam}_{k + 1}.xyz", pts, fmt="%.5f")
            else:
                np.save(HERE / f"{fam}_{k + 1}.npy", pts)


if __name__ == "__main__":
    main()
