"""Every error mv2d3d raises on purpose.

Each class derives from :class:`Mv2d3dError` *and* from the builtin a caller would
naturally catch (``ValueError`` for bad values, ``FileNotFoundError`` for missing files,
...), carries the offending name or path as an attribute, and its message ends with what to
do next.
"""

from __future__ import annotations

from typing import Optional, Sequence


class Mv2d3dError(Exception):
    """Base class of all mv2d3d errors."""


class InvalidPointCloudError(Mv2d3dError, ValueError):
    """A point cloud that the encoder cannot use (shape, dtype, NaN/Inf, too few points)."""


class ConfigError(Mv2d3dError, ValueError):
    """A configuration (config.json, recipe file, dataclass field) is unknown or invalid."""


class UnknownModelError(Mv2d3dError, LookupError):
    """A model name that is neither in the zoo, nor a local folder, nor a Hub repo id."""

    def __init__(self, name: str, close_matches: Sequence[str] = (), hint: str = ""):
        self.name = name
        self.close_matches = list(close_matches)
        msg = f"Unknown model {name!r}."
        if self.close_matches:
            msg += " Did you mean: " + ", ".join(repr(m) for m in self.close_matches) + "?"
        msg += hint or " Run `mv2d3d list` (or mv2d3d.list_models()) to see the zoo, or pass a local folder or a Hub repo id 'user/name'."
        super().__init__(msg)

    def __str__(self) -> str:  # LookupError/KeyError-style repr quoting is not wanted
        return self.args[0]


class NoPretrainedWeightsError(Mv2d3dError, ValueError):
    """A zoo entry was asked for pretrained weights that have not been published."""


class CheckpointMismatchError(Mv2d3dError, ValueError):
    """Checkpoint tensors do not match the model: missing, unexpected or mis-shaped keys."""

    def __init__(
        self,
        message: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: Sequence[str] = (),
    ):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        super().__init__(message)


class WeightsIntegrityError(Mv2d3dError, ValueError):
    """A weight file is corrupt, truncated, or its sha256 differs from the pinned one."""

    def __init__(self, message: str, path: Optional[str] = None):
        self.path = path
        super().__init__(message)


class OfflineCacheMissError(Mv2d3dError, FileNotFoundError):
    """Offline (or local_files_only) and the requested files are not in the cache."""


class HubError(Mv2d3dError, OSError):
    """The Hub (or a Hub-compatible server) answered with an error or could not be reached."""


class PointFileError(Mv2d3dError, OSError):
    """A file could not be read as a point cloud or mesh (unreadable, empty, degenerate)."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read points from {self.path!r}: {reason}")

    def __str__(self) -> str:
        return self.args[0]


class DatasetError(Mv2d3dError, ValueError):
    """A dataset folder or file does not have the expected layout."""


class CheckpointConversionError(Mv2d3dError, ValueError):
    """A foreign checkpoint could not be converted (not a checkpoint, unsafe, wrong layout)."""


__all__ = [
    "Mv2d3dError",
    "InvalidPointCloudError",
    "ConfigError",
    "UnknownModelError",
    "NoPretrainedWeightsError",
    "CheckpointMismatchError",
    "WeightsIntegrityError",
    "OfflineCacheMissError",
    "HubError",
    "PointFileError",
    "DatasetError",
    "CheckpointConversionError",
]
