"""Every call into ``huggingface_hub``, wrapped once.

Why a wrapper: the Hub client's errors are many and say little about *this* library's
options; here each one becomes one typed :mod:`mv2d3d.errors` error whose message names the
fix (``HF_HUB_OFFLINE``, ``local_files_only``, ``cache_dir``, :func:`mv2d3d.download`,
``token``). Every call passes ``library_name="mv2d3d"`` and the version, so the Hub can
attribute downloads.

Environment: ``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` once, when it is imported. mv2d3d reads them again at call time (see
:func:`hub_settings`) and passes ``endpoint=``/``cache_dir=``/``local_files_only=``
explicitly, so a variable set after ``import huggingface_hub`` (a notebook cell, a test
fixture) still takes effect, and a user's existing variables keep working.

Downloads are pinned: the requested revision (branch, tag or sha) is resolved to one commit
sha first, then ``config.json`` and ``model.safetensors`` are fetched *at that commit*, config
first, so the two files always belong together even if someone pushes in between.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

from .. import __version__
from ..errors import ConfigError, HubError, Mv2d3dError, OfflineCacheMissError, UnknownModelError, WeightsIntegrityError

logger = logging.getLogger(__name__)

LIBRARY_NAME = "mv2d3d"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"

_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    cache_dir: str
    offline: bool


def hub_settings(endpoint: Optional[str] = None, cache_dir: Optional[Union[str, os.PathLike]] = None) -> HubSettings:
    """Endpoint, cache folder and offline flag as the environment says *now*.

    Explicit arguments win; then the current environment (``HF_ENDPOINT``, ``HF_HUB_CACHE``,
    ``HF_HOME``, ``HF_HUB_OFFLINE``); then what ``huggingface_hub`` read at import time.
    """
    from huggingface_hub import constants

    env = os.environ
    ep = endpoint or env.get("HF_ENDPOINT") or constants.ENDPOINT
    if cache_dir is not None:
        cache = str(cache_dir)
    elif env.get("HF_HUB_CACHE"):
        cache = env["HF_HUB_CACHE"]
    elif env.get("HF_HOME"):
        cache = os.path.join(env["HF_HOME"], "hub")
    else:
        cache = constants.HF_HUB_CACHE
    offline = constants.is_offline_mode() or (env.get("HF_HUB_OFFLINE") or "").upper() in _TRUE
    return HubSettings(endpoint=ep.rstrip("/"), cache_dir=os.path.expanduser(cache), offline=offline)


def _api(settings: HubSettings, token: Optional[Union[str, bool]]):
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.endpoint, token=token, library_name=LIBRARY_NAME, library_version=__version__)


def sha256_file(path: Union[str, os.PathLike]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Union[str, os.PathLike], expected: str, *, what: str) -> None:
    """Raise :class:`WeightsIntegrityError` unless ``sha256(path) == expected``."""
    got = sha256_file(path)
    if got != expected.lower():
        raise WeightsIntegrityError(
            f"{what}: sha256 of {path} is {got}, but the zoo pins {expected}. The file is corrupt, was "
            "tampered with, or is not the published one. Delete it (for a Hub download: the cached copy, "
            "e.g. `hf cache rm model/<repo id>`, or pass a fresh cache_dir=) and download again; never load it as is.",
            path=str(path),
        )


def offline_message(name: str, settings: HubSettings, what: str, reason: str) -> str:
    return (
        f"{what} for {name!r} is not in the local cache ({settings.cache_dir}) and {reason}. "
        f"To use it offline, fetch it once while online with mv2d3d.download({name!r}) "
        f"(shell: `mv2d3d download {name}`), then load with HF_HUB_OFFLINE=1 or local_files_only=True. "
        "If it was downloaded into another cache, pass cache_dir=... (or set HF_HOME). "
        "To download now, unset HF_HUB_OFFLINE and pass local_files_only=False."
    )


def _raise_wrapped(
    err: Exception, *, name: str, repo_id: str, revision: Optional[str], settings: HubSettings, local_only: bool, what: str
) -> None:
    """Turn a huggingface_hub / httpx error into one mv2d3d error (always raises)."""
    from huggingface_hub import errors as hf_errors

    rev = revision or "main"
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, Mv2d3dError):
        raise err
    if isinstance(err, hf_errors.GatedRepoError) or (isinstance(err, hf_errors.HfHubHTTPError) and status == 403):
        raise HubError(
            f"Access to {repo_id!r} on {settings.endpoint} was refused ({status}). Pass token=... with read "
            "access (or run `hf auth login`), or request access on the repository page."
        ) from err
    if isinstance(err, hf_errors.RepositoryNotFoundError) or (
        isinstance(err, hf_errors.HfHubHTTPError) and status == 401
    ):
        from .registry import close_matches

        raise UnknownModelError(
            name,
            close_matches(name),
            hint=f" There is no repository {repo_id!r} on {settings.endpoint} (or it is private or gated and no "
            "valid token was sent: pass token=... or run `hf auth login`). Run `mv2d3d list` for the zoo's "
            "names, or pass an existing local folder.",
        ) from err
    if isinstance(err, hf_errors.RevisionNotFoundError):
        raise HubError(
            f"Revision {rev!r} does not exist in {repo_id!r} on {settings.endpoint}. Pass an existing branch, "
            "tag or commit sha as revision=..., or revision=None for the default branch."
        ) from err
    if isinstance(err, hf_errors.RemoteEntryNotFoundError):
        raise HubError(
            f"{repo_id!r} at revision {rev!r} has no {what} on {settings.endpoint}: it is not an mv2d3d model "
            "repository (those hold config.json + model.safetensors, written by save_pretrained/push_to_hub)."
        ) from err
    offline_like = isinstance(err, (hf_errors.OfflineModeIsEnabled,)) or (
        isinstance(err, (hf_errors.LocalEntryNotFoundError, hf_errors.RevisionResolutionError))
        and (local_only or settings.offline)
    )
    if offline_like:
        reason = (
            "offline mode is on (HF_HUB_OFFLINE is set)" if settings.offline else "local_files_only=True forbids downloads"
        )
        raise OfflineCacheMissError(offline_message(name, settings, f"{what} (revision {rev!r})", reason)) from err
    # The Hub answered with an error, or could not be reached, and nothing usable is cached.
    cause = err
    while getattr(cause, "__cause__", None) is not None and not isinstance(cause, hf_errors.HfHubHTTPError):
        cause = cause.__cause__
    status = getattr(getattr(cause, "response", None), "status_code", None)
    if status is not None:
        detail = f"the server answered HTTP {status}"
        if status >= 500:
            detail += " (a server-side failure: try again later)"
    else:
        detail = f"the server could not be reached ({type(cause).__name__}: {cause})"
    raise HubError(
        f"Could not fetch {what} of {repo_id!r} (revision {rev!r}) from {settings.endpoint}: {detail}, and it is "
        f"not in the local cache ({settings.cache_dir}). Check the connection and HF_ENDPOINT. To work offline "
        f"later, run mv2d3d.download({name!r}) once while the Hub is reachable, then use HF_HUB_OFFLINE=1 or "
        "local_files_only=True (with cache_dir=... if the files live in another cache)."
    ) from err


@dataclass(frozen=True)
class FetchedFiles:
    """Local paths of a model folder's files, and the commit they came from (None: not from the Hub)."""

    config: Path
    weights: Optional[Path]
    commit: Optional[str] = None


def resolve_commit(
    repo_id: str,
    revision: Optional[str],
    *,
    name: str,
    settings: HubSettings,
    token: Optional[Union[str, bool]],
    local_files_only: bool,
) -> str:
    """Resolve ``revision`` (branch, tag, sha; None = default branch) to a commit sha.

    Online: one API call; on a 5xx or an unreachable Hub, the cached ``refs/`` entry is used.
    Offline / ``local_files_only``: the cached ``refs/`` entry only.
    """
    local_only = local_files_only or settings.offline
    try:
        rev = _api(settings, token).resolve_revision(
            repo_id, revision=revision, cache_dir=settings.cache_dir, local_files_only=local_only, token=token
        )
    except Exception as e:  # noqa: BLE001 - every failure becomes one typed, actionable error
        _raise_wrapped(e, name=name, repo_id=repo_id, revision=revision, settings=settings, local_only=local_only, what="the revision")
    return rev.resolved


def fetch_file(
    repo_id: str,
    filename: str,
    commit: str,
    *,
    name: str,
    revision: Optional[str],
    settings: HubSettings,
    token: Optional[Union[str, bool]],
    local_files_only: bool,
) -> Path:
    """Download one file at ``commit`` into the huggingface_hub cache (or find it there)."""
    from huggingface_hub import hf_hub_download

    local_only = local_files_only or settings.offline
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=commit,
            cache_dir=settings.cache_dir,
            token=token,
            local_files_only=local_only,
            endpoint=settings.endpoint,
            library_name=LIBRARY_NAME,
            library_version=__version__,
        )
    except Exception as e:  # noqa: BLE001
        _raise_wrapped(e, name=name, repo_id=repo_id, revision=revision, settings=settings, local_only=local_only, what=filename)
    return Path(path)


def fetch_model_files(
    repo_id: str,
    *,
    name: str,
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    token: Optional[Union[str, bool]] = None,
    local_files_only: bool = False,
    endpoint: Optional[str] = None,
    pinned_sha256: Optional[Mapping[str, str]] = None,
    with_weights: bool = True,
) -> FetchedFiles:
    """Fetch ``config.json`` then ``model.safetensors`` of ``repo_id`` at one commit.

    Args:
        name: what the user asked for (zoo name or repo id), for messages.
        pinned_sha256: expected sha256 per file (zoo entries): checked right after each
            download, before the file is parsed.
        with_weights: False fetches the config only (``pretrained=False``).

    Raises:
        OfflineCacheMissError, HubError, UnknownModelError, WeightsIntegrityError.
    """
    settings = hub_settings(endpoint, cache_dir)
    commit = resolve_commit(repo_id, revision, name=name, settings=settings, token=token, local_files_only=local_files_only)
    kw = dict(name=name, revision=revision, settings=settings, token=token, local_files_only=local_files_only)
    config = fetch_file(repo_id, CONFIG_NAME, commit, **kw)
    if pinned_sha256 is not None:
        check_pinned(config, CONFIG_NAME, pinned_sha256, name=name)
    weights = None
    if with_weights:
        weights = fetch_file(repo_id, WEIGHTS_NAME, commit, **kw)
        if pinned_sha256 is not None:
            check_pinned(weights, WEIGHTS_NAME, pinned_sha256, name=name)
        else:
            check_lfs_blob(weights, name=name)
    logger.debug("%s: %s@%s -> %s", name, repo_id, commit, config.parent)
    return FetchedFiles(config=config, weights=weights, commit=commit)


def check_pinned(path: Path, filename: str, pinned: Mapping[str, str], *, name: str) -> None:
    """Verify ``path`` against the registry's pin for ``filename``; an unpinned file is an error too."""
    expected = pinned.get(filename)
    if not expected:
        raise WeightsIntegrityError(
            f"Zoo entry {name!r} pins no sha256 for {filename}, so it cannot be verified. This is a registry bug: "
            "report it; meanwhile load the repository id directly if you trust it.",
            path=str(path),
        )
    verify_sha256(path, expected, what=f"zoo entry {name!r}, {filename}")


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_lfs_blob(path: Path, *, name: str) -> None:
    """Verify a cached LFS file against its own sha256.

    huggingface_hub stores an LFS file as ``blobs/<sha256 of the content>`` (the Hub's
    ``X-Linked-Etag``) and links the snapshot to it; a blob whose content no longer matches
    its name was corrupted after download. (Without symlinks, e.g. on some Windows setups,
    the name is not available and the check is skipped.)
    """
    if not path.is_symlink():
        return
    blob = path.resolve()
    if not _SHA256_HEX.fullmatch(blob.name):
        return
    if sha256_file(blob) != blob.name:
        raise WeightsIntegrityError(
            f"The cached copy of {name!r} weights ({blob}) does not match its sha256 (the Hub's ETag): it was "
            "corrupted after download. Delete it (or use a fresh cache_dir=) and download again.",
            path=str(blob),
        )


def pin_files(folder: Union[str, os.PathLike]) -> dict:
    """``{file name: sha256}`` of a model folder's files: the ``sha256`` to register for a zoo entry."""
    return {n: sha256_file(Path(folder) / n) for n in (CONFIG_NAME, WEIGHTS_NAME)}


def local_model_files(folder: Union[str, os.PathLike], *, with_weights: bool = True) -> FetchedFiles:
    """The files of a local model folder; a missing file is a :class:`ConfigError` naming it."""
    folder = Path(folder)
    config = folder / CONFIG_NAME
    weights = folder / WEIGHTS_NAME
    missing = [p.name for p in ((config, weights) if with_weights else (config,)) if not p.is_file()]
    if missing:
        raise ConfigError(
            f"{folder} is not a complete mv2d3d model folder: missing {missing}. A model folder holds "
            "config.json + model.safetensors (+ README.md), as written by save_pretrained(); foreign "
            "checkpoints are imported with `mv2d3d convert`."
        )
    return FetchedFiles(config=config, weights=weights if with_weights else None)
