"""The model zoo: one frozen :class:`ZooEntry` per name.

An entry keeps the architecture apart from where its weights live (as timm keeps
``PretrainedCfg`` apart from model args): the config, the Hub repo id, the pinned revision,
the sha256 of every weight file, the recipe that produced the weights and its model card.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from ..config import EncoderConfig
from ..errors import UnknownModelError


@dataclass(frozen=True)
class ZooEntry:
    """A named encoder of the zoo.

    Attributes:
        name: zoo name, e.g. ``"mv-m3ae-base"``.
        config: architecture.
        repo_id: Hub repository holding the weights (None: not published).
        revision: pinned commit sha of ``repo_id``.
        sha256: expected sha256 per weight file name, always checked.
        bundled: folder name under ``mv2d3d/weights/`` when the weights ship in the package.
        recipe: pretraining recipe that made (or would make) the weights.
        card: model card file under ``model_cards/``.
        note: one line for ``mv2d3d list``.
    """

    name: str
    config: EncoderConfig
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    sha256: Mapping[str, str] = field(default_factory=dict)
    bundled: Optional[str] = None
    recipe: Optional[str] = None
    card: Optional[str] = None
    note: str = ""

    @property
    def has_weights(self) -> bool:
        return bool(self.bundled or (self.repo_id and self.revision))

    @property
    def bundled_path(self) -> Optional[Path]:
        """Folder of the bundled weights inside the installed package (None if not bundled)."""
        return BUNDLED_WEIGHTS_DIR / self.bundled if self.bundled else None

    @property
    def card_path(self) -> Path:
        """The entry's model card template (the generic one if the entry names none)."""
        return CARD_TEMPLATES_DIR / (self.card or "generic.md")


_ZOO: Dict[str, ZooEntry] = {}

#: Where bundled weights live: ``mv2d3d/weights/<entry.bundled>/`` (package data). Tests point
#: it elsewhere; loading a bundled folder goes through the same sha256 checks as a download.
BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

#: Model card templates (package data, so the renderer finds them after a wheel install).
#: The repository's top-level ``model_cards/`` is a symlink to this folder: one source of truth.
CARD_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "model_cards"

#: Files every published model folder holds; every one of them is sha256-pinned for zoo entries.
WEIGHT_FILES = ("config.json", "model.safetensors")


def register(entry: ZooEntry) -> ZooEntry:
    if entry.name in _ZOO:
        raise ValueError(f"zoo entry {entry.name!r} registered twice")
    _ZOO[entry.name] = entry
    return entry


register(ZooEntry(
    name="mv-m3ae-tiny",
    config=EncoderConfig(embed_dim=192, depth=6, num_heads=3, point_feature_layers=(1, 3, 5)),
    # pretrained by us on a CPU and shipped in the package (tools/bundle_tiny.py writes and pins it)
    bundled="mv-m3ae-tiny",
    sha256={
        "config.json": "54855a98bd7c9d1b82dd876ed0e7496f4ec6abfb3becadd0454a96dc3c8ddcbe",
        "model.safetensors": "9249c716080f638f7bdec0acd922c3a0d8a2d8dcf04c8171f1d01ec356583546",
    },
    recipe="mv-m3ae-tiny",
    card="mv-m3ae-tiny.md",
    note="192 x 6, ~3M params; pretrained on a CPU, ships inside the package",
))
register(ZooEntry(
    name="mv-m3ae-base",
    config=EncoderConfig(embed_dim=384, depth=12, num_heads=6),
    recipe="base-shapenet55",
    card="mv-m3ae-base.md",
    note="384 x 12, ~22M params; the Point-MAE-family backbone",
))
register(ZooEntry(
    name="mv-m3ae-large",
    config=EncoderConfig(embed_dim=768, depth=12, num_heads=12),
    recipe="large-shapenet55",
    card="mv-m3ae-large.md",
    note="768 x 12, ~90M params",
))


def list_models(pattern: Optional[str] = None, pretrained: Optional[bool] = None) -> List[str]:
    """Names of the zoo's encoders, sorted.

    Args:
        pattern: shell-style filter, e.g. ``"*tiny*"``.
        pretrained: True: only entries with published weights; False: only those without.
    """
    names = sorted(_ZOO)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if pretrained is not None:
        names = [n for n in names if _ZOO[n].has_weights == pretrained]
    return names


def is_zoo_name(name: str) -> bool:
    return name in _ZOO


def entries_with_weights() -> List[str]:
    """Zoo names whose weights are published (bundled or on the Hub)."""
    return [n for n in sorted(_ZOO) if _ZOO[n].has_weights]


def close_matches(name: str, n: int = 3) -> List[str]:
    """Zoo names that look like ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, list(_ZOO), n=n, cutoff=0.5)


def get_entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; an unknown name raises :class:`UnknownModelError` with close matches."""
    try:
        return _ZOO[name]
    except KeyError:
        raise UnknownModelError(name, close_matches(name)) from None
