"""The model zoo: one frozen :class:`ZooEntry` per name.

An entry keeps the architecture apart from where its weights live (as timm keeps
``PretrainedCfg`` apart from model args): the config, the Hub repo id, the pinned revision,
the sha256 of every weight file, the recipe that produced the weights and its model card.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
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


_ZOO: Dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    if entry.name in _ZOO:
        raise ValueError(f"zoo entry {entry.name!r} registered twice")
    _ZOO[entry.name] = entry
    return entry


register(ZooEntry(
    name="mv-m3ae-tiny",
    config=EncoderConfig(embed_dim=192, depth=6, num_heads=3, point_feature_layers=(1, 3, 5)),
    recipe="tiny-procedural-cpu",
    card="mv-m3ae-tiny.md",
    note="192 x 6, ~3M params; small enough to pretrain on a CPU",
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


def get_entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; an unknown name raises :class:`UnknownModelError` with close matches."""
    try:
        return _ZOO[name]
    except KeyError:
        raise UnknownModelError(name, difflib.get_close_matches(name, list(_ZOO), n=3, cutoff=0.5)) from None
