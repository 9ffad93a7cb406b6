"""``load``: the one door to every model (zoo name, local folder or Hub repo id).

Sources are tried in this order (timm's ``create_model`` habit: one door, clear refusals):

1. a zoo name (``mv2d3d.list_models()``): bundled folder inside the package, or its Hub repo
   at the pinned commit; every file's sha256 is checked against the registry;
2. an existing local folder (``config.json`` + ``model.safetensors``);
3. a Hub repo id ``"user/name"``, through ``huggingface_hub`` (its cache, ``HF_HOME``,
   ``HF_HUB_OFFLINE``, revisions, tokens).

A string that looks like a path (``./x``, ``/x``, ``~/x``, ``a/b/c``, backslashes) but is not an
existing folder is refused with :class:`UnknownModelError` rather than sent to the Hub; a bare
unknown name suggests close zoo names.

Weights are read with ``safetensors`` only: nothing is ever unpickled.

Loading is strict (see :meth:`PretrainedModel.load_state_dict_strict`); the sanctioned
relaxations, each logged with exact tensor names, are:

* ``model_class=PointClassifier`` (or another task model with an ``encoder``) on an *encoder*
  checkpoint: the encoder is loaded strictly into ``model.encoder``, the task head is new;
* a *classifier* checkpoint loaded with a different ``num_classes`` / ``hidden_dims``: the
  head tensors whose shapes no longer fit are new, every other tensor is loaded strictly;
* ``model_class=PointEncoder`` on a *task* checkpoint: its encoder is returned (strict on
  every ``encoder.*`` tensor), the task tensors are dropped and logged. This lets
  ``mv2d3d.load("user/my-classifier")`` serve features from a fine-tuned encoder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from ..config import EncoderConfig, config_from_dict, config_to_dict, load_config_file
from ..errors import ConfigError, NoPretrainedWeightsError, UnknownModelError, WeightsIntegrityError
from ..models import PointEncoder
from ..models.base import PretrainedModel
from . import client
from .registry import ZooEntry, close_matches, entries_with_weights, is_zoo_name, get_entry

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

# A Hub repo id: exactly one slash, no leading dot, only the Hub's characters.
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass(frozen=True)
class Source:
    """Where a model comes from. ``kind`` is ``"zoo"``, ``"folder"`` or ``"hub"``."""

    kind: str
    name: str
    entry: Optional[ZooEntry] = None
    path: Optional[Path] = None
    repo_id: Optional[str] = None


def _looks_like_path(s: str) -> bool:
    return (
        s.startswith((".", "~", "/"))
        or "\\" in s
        or os.path.isabs(s)
        or s.count("/") > 1
        or s.endswith("/")
        or (len(s) > 1 and s[1] == ":")
    )


def resolve_source(name_or_path: PathLike) -> Source:
    """Decide what ``name_or_path`` names: zoo entry, local folder or Hub repo id.

    Raises:
        UnknownModelError: not a zoo name, not an existing folder and not a valid repo id
            (with close zoo names), or a path-like string with nothing at that path.
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise UnknownModelError(str(name_or_path), hint=" Pass a zoo name, a local folder or a Hub repo id 'user/name'.")
    name = name_or_path
    if is_zoo_name(name):
        return Source("zoo", name, entry=get_entry(name))
    path = Path(name).expanduser()
    if path.is_dir():
        return Source("folder", name, path=path)
    if path.exists():
        raise UnknownModelError(
            name, hint=f" {name!r} is a file, not a model folder: pass the folder holding config.json + model.safetensors."
        )
    if _looks_like_path(name):
        raise UnknownModelError(
            name,
            close_matches(name),
            hint=f" It looks like a path, but there is no folder at {str(path.resolve())!r}. Check the path; "
            "a Hub repo id has exactly one slash, 'user/name'.",
        )
    if _REPO_ID.match(name) and "--" not in name and ".." not in name:
        return Source("hub", name, repo_id=name)
    raise UnknownModelError(name, close_matches(name))


def _no_weights_error(entry: ZooEntry) -> NoPretrainedWeightsError:
    others = entries_with_weights()
    msg = (
        f"Zoo entry {entry.name!r} has no published weights yet, and mv2d3d never substitutes others. "
        f"Use pretrained=False for the architecture with random weights"
    )
    if entry.recipe:
        msg += f", or make the weights yourself with `mv2d3d pretrain --config {entry.recipe}`"
    msg += (
        f". Entries with weights: {others}." if others else ". No zoo entry has published weights in this release."
    )
    return NoPretrainedWeightsError(msg)


def _zoo_files(entry: ZooEntry, *, cache_dir, token, local_files_only, endpoint, with_weights: bool = True) -> client.FetchedFiles:
    if entry.bundled:
        folder = entry.bundled_path
        try:
            files = client.local_model_files(folder, with_weights=with_weights)
        except ConfigError as e:
            raise WeightsIntegrityError(
                f"Bundled weights of {entry.name!r} are missing from the installed package ({e}). Reinstall mv2d3d "
                "(`pip install --force-reinstall mv2d3d`).",
                path=str(folder),
            ) from e
        client.check_pinned(files.config, client.CONFIG_NAME, entry.sha256, name=entry.name)
        if files.weights is not None:
            client.check_pinned(files.weights, client.WEIGHTS_NAME, entry.sha256, name=entry.name)
        return files
    return client.fetch_model_files(
        entry.repo_id,
        name=entry.name,
        revision=entry.revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
        endpoint=endpoint,
        pinned_sha256=entry.sha256,
        with_weights=with_weights,
    )


def read_safetensors(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read every tensor of a ``.safetensors`` file onto the CPU (never unpickles).

    Raises:
        WeightsIntegrityError: truncated, corrupt or not a safetensors file.
    """
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - the Rust reader raises its own types; all mean "unreadable"
        raise WeightsIntegrityError(
            f"{path} is not a readable safetensors file ({type(e).__name__}: {e}); it is truncated or corrupt. "
            "Save it again, or delete the cached copy and download again (e.g. a fresh cache_dir=).",
            path=str(path),
        ) from e


def _class_names(kwargs: Dict[str, Any]) -> None:
    names = kwargs.get("class_names")
    if names is not None:
        kwargs["class_names"] = tuple(str(n) for n in names)
        kwargs.setdefault("num_classes", len(kwargs["class_names"]))


def _override(cfg: Any, kwargs: Dict[str, Any], *, source: str) -> Any:
    """``cfg`` with fields replaced by ``kwargs`` (unknown fields: ConfigError)."""
    if not kwargs:
        return cfg
    data = config_to_dict(cfg)
    data.update(kwargs)
    return config_from_dict(type(cfg), data, source=f"{source} (keyword overrides {sorted(kwargs)})")


def _task_prefixes(model: PretrainedModel) -> Tuple[str, ...]:
    """Key prefixes of everything that is not the encoder (the task-specific tensors)."""
    own = model.state_dict()
    return tuple(sorted({k.split(".", 1)[0] + "." for k in own if not k.startswith("encoder.")}))


def build_model(
    model_class: type,
    architecture: str,
    config: Any,
    state: Optional[Dict[str, torch.Tensor]],
    *,
    source: str,
    model_kwargs: Optional[Dict[str, Any]] = None,
    base_model: Optional[str] = None,
) -> PretrainedModel:
    """Build ``model_class`` from a parsed ``config.json`` and fill it from ``state``.

    See the module docstring for the rules (strict, plus the logged head relaxations).
    ``base_model`` (default: ``source``) is recorded in the config of a derived task model.

    Raises:
        ConfigError: the checkpoint's architecture cannot make ``model_class``; bad overrides.
        CheckpointMismatchError: missing, unexpected or mis-shaped tensors.
    """
    if not (isinstance(model_class, type) and issubclass(model_class, PretrainedModel)):
        raise ConfigError(f"model_class must be an mv2d3d model class (PointEncoder, PointClassifier, ...), got {model_class!r}.")
    kwargs = dict(model_kwargs or {})
    _class_names(kwargs)
    base_model = base_model or source
    target = model_class.architecture
    target_fields = {f.name for f in dataclasses.fields(model_class.config_class)} if dataclasses.is_dataclass(model_class.config_class) else set()
    src_is_task = hasattr(config, "encoder") and isinstance(getattr(config, "encoder"), EncoderConfig)

    if architecture == target:
        if (
            "num_classes" in kwargs and "class_names" not in kwargs
            and kwargs["num_classes"] != getattr(config, "num_classes", None) and getattr(config, "class_names", None)
        ):
            kwargs["class_names"] = None  # the saved names belong to the old head
        new_cfg = _override(config, kwargs, source=source)
        if "base_model" in target_fields and kwargs and new_cfg.base_model == config.base_model and new_cfg != config:
            # A classifier derived from this checkpoint names it as its base.
            new_cfg = dataclasses.replace(new_cfg, base_model=base_model)
        model = model_class(new_cfg)
        if state is not None:
            relax = src_is_task and any(
                getattr(new_cfg, f, None) != getattr(config, f, None) for f in ("num_classes", "hidden_dims", "pooling")
            )
            if relax:
                own = model.state_dict()
                prefixes = _task_prefixes(model)
                dropped = sorted(
                    k for k, v in state.items()
                    if k.startswith(prefixes) and (k not in own or tuple(own[k].shape) != tuple(v.shape))
                )
                state = {k: v for k, v in state.items() if k not in dropped}
                logger.info(
                    "%s: task head rebuilt (num_classes %s -> %s); checkpoint tensors replaced: %s",
                    source, getattr(config, "num_classes", None), getattr(new_cfg, "num_classes", None), dropped,
                )
                model.load_state_dict_strict(state, allow_new=prefixes, source=source)
            else:
                model.load_state_dict_strict(state, source=source)
        return model

    if model_class.config_class is EncoderConfig and src_is_task:
        # An encoder out of a task checkpoint: keep encoder.*, drop (and name) the rest.
        new_cfg = _override(config.encoder, kwargs, source=source)
        model = model_class(new_cfg)
        if state is not None:
            sub = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
            dropped = sorted(k for k in state if not k.startswith("encoder."))
            model.load_state_dict_strict(sub, source=f"{source} (encoder.* of a {architecture})")
            logger.info("%s is a %s: returning its encoder; dropped task tensors: %s", source, architecture, dropped)
        return model

    if "encoder" in target_fields and (architecture == "PointEncoder" or src_is_task):
        # A new task model on a pretrained encoder (or on the encoder of another task model).
        enc_cfg = config if architecture == "PointEncoder" else config.encoder
        if "num_classes" in target_fields and "num_classes" not in kwargs:
            raise ConfigError(
                f"{source} is a {architecture} without a {target} head: pass num_classes=... (or class_names=[...]) "
                f"to {target}.from_pretrained so that a new head of the right size is built."
            )
        kwargs.setdefault("base_model", base_model)
        try:
            new_cfg = model_class.config_class(encoder=enc_cfg, **kwargs)
        except TypeError as e:
            raise ConfigError(f"{target}.from_pretrained({source!r}): bad keyword argument(s): {e}") from e
        model = model_class(new_cfg)
        if state is not None:
            if architecture == "PointEncoder":
                enc_state = {"encoder." + k: v for k, v in state.items()}
            else:
                enc_state = {k: v for k, v in state.items() if k.startswith("encoder.")}
                logger.info("%s: dropped task tensors of the %s: %s", source, architecture, sorted(set(state) - set(enc_state)))
            model.load_state_dict_strict(enc_state, allow_new=_task_prefixes(model), source=source)
        return model

    raise ConfigError(
        f"{source} holds a {architecture!r} checkpoint, which cannot make a {target!r}. Load it with its own "
        f"class (mv2d3d.load for encoders, PointClassifier.from_pretrained for classifiers)."
    )


def load_model(
    name_or_path: PathLike,
    *,
    model_class: type = PointEncoder,
    pretrained: bool = True,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
    token: Optional[Union[str, bool]] = None,
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[torch.dtype] = None,
    endpoint: Optional[str] = None,
    **model_kwargs: Any,
) -> PretrainedModel:
    """Load a model from a zoo name, a local folder or a Hub repo id.

    Args:
        name_or_path: ``"mv-m3ae-base"``, ``"./my-encoder"`` or ``"user/my-encoder"``.
        model_class: :class:`~mv2d3d.models.PointEncoder` (default), :class:`~mv2d3d.models.PointClassifier`, ...
        pretrained: False builds the architecture with random weights (weights are not fetched).
        revision: branch, tag or commit sha of a Hub repo (zoo entries are pinned already).
        cache_dir: huggingface_hub cache folder (default: ``HF_HUB_CACHE`` / ``HF_HOME/hub``).
        local_files_only: never touch the network; use the cache only.
        token: Hub token for private or gated repositories.
        device, dtype: where and in which dtype the model is returned.
        endpoint: Hub endpoint (default: ``HF_ENDPOINT`` or https://huggingface.co).
        **model_kwargs: config overrides, e.g. ``num_classes=10, class_names=[...]`` for a
            classifier, ``drop_path_rate=0.0`` for an encoder.

    Returns:
        The model in eval mode on ``device`` in ``dtype``.

    Raises:
        UnknownModelError: unknown name (with close matches), missing path, no such Hub repo.
        NoPretrainedWeightsError: a zoo entry without published weights and ``pretrained=True``.
        OfflineCacheMissError: offline / ``local_files_only`` and the files are not cached.
        HubError: the Hub failed (5xx, unreachable, no such revision) and nothing is cached.
        WeightsIntegrityError: sha256 mismatch (zoo), truncated or corrupt safetensors.
        ConfigError: unknown architecture or fields in config.json, bad overrides.
        CheckpointMismatchError: missing, unexpected or mis-shaped tensors.
    """
    src = resolve_source(name_or_path)
    fetch = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only, endpoint=endpoint)
    commit = None
    if src.kind == "zoo":
        entry = src.entry
        if revision is not None and revision != entry.revision:
            raise ConfigError(
                f"Zoo entry {entry.name!r} is pinned to revision {entry.revision!r}; it cannot load revision "
                f"{revision!r}. To load another revision, pass the repo id: mv2d3d.load({entry.repo_id!r}, revision=...)."
            )
        if not pretrained:
            architecture, config, state = "PointEncoder", entry.config, None
        else:
            if not entry.has_weights:
                raise _no_weights_error(entry)
            files = _zoo_files(entry, **fetch)
            commit = files.commit
            architecture, config = load_config_file(files.config)
            if architecture != "PointEncoder" or config != entry.config:
                raise WeightsIntegrityError(
                    f"config.json of zoo entry {entry.name!r} ({files.config}) does not match the registry's "
                    "architecture; the registry and the published files disagree. Report this.",
                    path=str(files.config),
                )
            state = read_safetensors(files.weights)
    else:
        if src.kind == "folder":
            files = client.local_model_files(src.path, with_weights=pretrained)
        else:
            files = client.fetch_model_files(src.repo_id, name=src.name, revision=revision, with_weights=pretrained, **fetch)
            commit = files.commit
        architecture, config = load_config_file(files.config)
        state = read_safetensors(files.weights) if pretrained else None
    # Derived models name their base by its Hub id when there is one (what the card's base_model needs).
    base = src.entry.repo_id if src.kind == "zoo" and src.entry.repo_id else src.name
    model = build_model(model_class, architecture, config, state, source=src.name, model_kwargs=model_kwargs, base_model=base)
    if pretrained:
        logger.info(
            "Loaded %s %r from %s%s", type(model).__name__, src.name,
            {"zoo": "the zoo", "folder": "a local folder", "hub": "the Hub"}[src.kind],
            f" at commit {commit}" if commit else "",
        )
    return model.to(device=device, dtype=dtype).eval()


def load(name_or_path: PathLike, **kwargs: Any) -> PointEncoder:
    """Load an encoder (zoo name, local folder or Hub repo id); see :func:`load_model`.

    Example:
        >>> enc = mv2d3d.load("mv-m3ae-tiny")
        >>> enc = mv2d3d.load("user/my-encoder", revision="<commit sha>")
        >>> enc = mv2d3d.load("./my-encoder", device="cuda", dtype=torch.bfloat16)
    """
    if "model_class" in kwargs:
        raise ConfigError("mv2d3d.load always returns an encoder; use mv2d3d.hub.load_model(..., model_class=...) instead.")
    return load_model(name_or_path, model_class=PointEncoder, **kwargs)


def download(
    name_or_repo: PathLike,
    *,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    token: Optional[Union[str, bool]] = None,
    endpoint: Optional[str] = None,
) -> str:
    """Prefetch a model's files into the huggingface_hub cache so that later runs work offline.

    Fetches ``config.json`` then ``model.safetensors`` at one commit (zoo entries: the pinned
    commit, sha256-verified). Afterwards ``mv2d3d.load(name, local_files_only=True)`` or
    ``HF_HUB_OFFLINE=1`` works without network (pass the same ``cache_dir`` if you chose one).

    Returns:
        The local folder holding the files (a cache snapshot, the bundled folder or the
        local folder itself).

    Raises:
        Same as :func:`load_model` (minus the model-building errors).
    """
    src = resolve_source(name_or_repo)
    fetch = dict(cache_dir=cache_dir, token=token, local_files_only=False, endpoint=endpoint)
    if src.kind == "zoo":
        entry = src.entry
        if not entry.has_weights:
            raise _no_weights_error(entry)
        if revision is not None and revision != entry.revision:
            raise ConfigError(f"Zoo entry {entry.name!r} is pinned to revision {entry.revision!r}; pass its repo id to fetch another.")
        files = _zoo_files(entry, **fetch)
    elif src.kind == "folder":
        files = client.local_model_files(src.path)
    else:
        files = client.fetch_model_files(src.repo_id, name=src.name, revision=revision, **fetch)
    folder = str(files.config.parent)
    logger.info("%s is available in %s%s", src.name, folder, f" (commit {files.commit})" if files.commit else "")
    return folder
