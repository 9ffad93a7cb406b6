"""``save_pretrained`` / ``push_to_hub``: config.json + model.safetensors + README.md.

Why not ``huggingface_hub.PyTorchModelHubMixin``: it would give the three methods for free,
but its loading is lenient by default (``strict=False``: a partial load goes unnoticed and
users evaluate random weights), it only logs when ``config.json`` is missing, it knows nothing
of our registry's sha256 pins, of the task-head rule (a new head is the one sanctioned
mismatch, logged by tensor name), of typed errors that say what to do, or of our card
templates; and its ``from_pretrained`` would be a second door next to ``mv2d3d.load``. We keep
its good habits instead: the template-method split (``PretrainedModel`` methods are thin doors
into this package), keyword-only options, ``push_to_hub`` = save into a temporary folder +
one upload, cards via ``ModelCard``.

Saving is atomic where it matters: the slow part (serialising tensors, rendering the card)
happens in a temporary folder next to the target. A new folder then appears with one
``rename``; an existing folder gets its three files replaced by three ``os.replace`` calls (a
few microseconds), and any other files the user keeps there (logs, metrics) are left alone.
An interrupted save therefore leaves the old folder as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .. import __version__
from ..config import load_config_file, save_config
from ..errors import ConfigError, HubError, Mv2d3dError
from . import client
from .cards import CARD_KWARGS, render_card, retarget_card

logger = logging.getLogger(__name__)

MODEL_FILES = (client.CONFIG_NAME, client.WEIGHTS_NAME, client.CARD_NAME)


def _state_for_saving(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors without shared storage.
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def write_weights(tensors: Dict[str, torch.Tensor], path: Union[str, os.PathLike]) -> None:
    """Write ``tensors`` as safetensors with ``{"format": "pt"}`` metadata, fsynced."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})
    _fsync(path)


def _fsync(path: Union[str, os.PathLike]) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _default_permissions(folder: Path) -> None:
    # mkdtemp makes a 0700 folder and safetensors writes 0600 files; a saved model should get
    # the permissions of any file the user creates (umask), or sharing the folder breaks.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        os.chmod(f, 0o666 & ~umask)


def _check_card_kwargs(card_kwargs: Dict[str, Any]) -> None:
    unknown = sorted(set(card_kwargs) - set(CARD_KWARGS))
    if unknown:
        raise ConfigError(f"Unknown model card option(s) {unknown}; known: {sorted(CARD_KWARGS)}.")


def save_pretrained(model: Any, save_directory: Union[str, os.PathLike], **card_kwargs: Any) -> str:
    """Write ``config.json``, ``model.safetensors`` and a ``README.md`` card into ``save_directory``.

    Args:
        model: a :class:`~mv2d3d.models.base.PretrainedModel` (encoder, classifier, ...).
        save_directory: target folder (created; an existing one keeps its other files).
        **card_kwargs: model card options: ``base_model``, ``datasets``, ``metrics``
            (list of ``{"name", "type", "value", "dataset"}``), ``command``, ``recipe``,
            ``training_data``, ``license``, ``tags``, ``notes`` (markdown), ``class_names``,
            ``template`` (zoo name or template file), ``model_id`` (the id the card's usage
            snippet loads; default: the folder as given).

    Returns:
        The folder path.

    Raises:
        ConfigError: unknown card option, malformed metrics, target is a file.
    """
    _check_card_kwargs(card_kwargs)
    target = Path(save_directory).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder; pass a folder path to save_pretrained.")
    arch = getattr(model, "architecture", "")
    if not arch or not hasattr(model, "config"):
        raise ConfigError(f"save_pretrained needs an mv2d3d model (PointEncoder, PointClassifier, ...), got {type(model).__name__}.")
    card_kwargs.setdefault("model_id", os.fspath(save_directory))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.incomplete-", dir=target.parent))
    try:
        save_config(model.config, arch, tmp / client.CONFIG_NAME, extra={"mv2d3d_version": __version__})
        write_weights(_state_for_saving(model), tmp / client.WEIGHTS_NAME)
        card = render_card(model, **card_kwargs)
        (tmp / client.CARD_NAME).write_text(str(card), encoding="utf-8")
        _default_permissions(tmp)
        if not target.exists():
            os.replace(tmp, target)
        else:
            for name in MODEL_FILES:
                os.replace(tmp / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Saved %s to %s", type(model).__name__, target)
    return str(target)


def validate_folder(folder: Union[str, os.PathLike]) -> str:
    """Check that ``folder`` is a loadable model folder; returns its architecture.

    config.json must parse and model.safetensors must load strictly into that architecture.

    Raises:
        ConfigError, WeightsIntegrityError, CheckpointMismatchError.
    """
    from ..models import PointClassifier, PointEncoder
    from .loading import build_model, read_safetensors

    files = client.local_model_files(folder)
    arch, cfg = load_config_file(files.config)
    classes = {"PointEncoder": PointEncoder, "PointClassifier": PointClassifier}
    if arch not in classes:  # a newer task model: find it among the model classes by architecture name
        import mv2d3d.models as models

        classes.update({c.architecture: c for c in vars(models).values() if isinstance(c, type) and getattr(c, "architecture", "")})
    build_model(classes[arch], arch, cfg, read_safetensors(files.weights), source=str(folder))
    return arch


def _wrap_push_error(err: Exception, repo_id: str, endpoint: str) -> HubError:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        return HubError(
            f"The Hub at {endpoint} refused the upload to {repo_id!r} (HTTP {status}). Pass a token with write "
            "access (token=... / --token, or `hf auth login`) and check that you may write to that namespace."
        )
    if status is not None:
        return HubError(f"Upload of {repo_id!r} to {endpoint} failed: the server answered HTTP {status} ({err}). Try again later.")
    return HubError(f"Upload of {repo_id!r} to {endpoint} failed: {type(err).__name__}: {err}. Check the connection and HF_ENDPOINT.")


def push_folder(
    folder: Union[str, os.PathLike],
    repo_id: str,
    *,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    revision: Optional[str] = None,
    commit_message: Optional[str] = None,
    endpoint: Optional[str] = None,
    create_pr: bool = False,
    validate: bool = True,
) -> str:
    """Upload a ``save_pretrained`` folder to ``repo_id`` as one commit (what ``mv2d3d push`` does).

    Only ``config.json``, ``model.safetensors`` and ``README.md`` are uploaded (other files in
    the folder, e.g. logs, stay local). The folder is validated first (strict load), so a
    broken folder is refused before anything is sent. The card's usage snippet is pointed at
    ``repo_id``.

    Returns:
        The commit URL (the pull request URL with ``create_pr=True``).

    Raises:
        ConfigError / WeightsIntegrityError / CheckpointMismatchError: broken folder.
        HubError: the Hub refused or failed.
    """
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; pass the folder written by save_pretrained().")
    arch = validate_folder(folder) if validate else load_config_file(folder / client.CONFIG_NAME)[0]
    settings = client.hub_settings(endpoint)
    if settings.offline:
        raise HubError("Cannot push while offline mode is on (HF_HUB_OFFLINE is set): unset it to upload.")
    api = client._api(settings, token)
    ops = [
        CommitOperationAdd(path_in_repo=client.CONFIG_NAME, path_or_fileobj=str(folder / client.CONFIG_NAME)),
        CommitOperationAdd(path_in_repo=client.WEIGHTS_NAME, path_or_fileobj=str(folder / client.WEIGHTS_NAME)),
    ]
    card = folder / client.CARD_NAME
    if card.is_file():
        ops.append(CommitOperationAdd(path_in_repo=client.CARD_NAME, path_or_fileobj=retarget_card(card.read_text(encoding="utf-8"), repo_id).encode("utf-8")))
    else:
        logger.warning("%s has no README.md model card; pushing without one (save_pretrained writes it).", folder)
    others = sorted(p.name for p in folder.iterdir() if p.name not in MODEL_FILES)
    if others:
        logger.info("Not uploading files that are not part of the model: %s", others)
    message = commit_message or f"Upload {arch} with mv2d3d {__version__}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and not create_pr and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(
            repo_id, ops, commit_message=message, revision=revision, create_pr=create_pr, repo_type="model"
        )
    except Mv2d3dError:
        raise
    except Exception as e:  # noqa: BLE001 - one typed error for every client/server failure
        raise _wrap_push_error(e, repo_id, settings.endpoint) from e
    url = info.pr_url if create_pr and info.pr_url else info.commit_url
    logger.info("Pushed %s to %s (commit %s)", folder, repo_id, info.oid)
    return url


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    revision: Optional[str] = None,
    commit_message: Optional[str] = None,
    endpoint: Optional[str] = None,
    create_pr: bool = False,
    **card_kwargs: Any,
) -> str:
    """Save ``model`` into a temporary folder and upload it to ``repo_id`` as one commit.

    Creates the repository if needed (``private`` applies only then). ``card_kwargs`` go to
    :func:`save_pretrained`; the card's snippet loads ``repo_id``.

    Returns:
        The commit URL (the pull request URL with ``create_pr=True``).
    """
    card_kwargs.setdefault("model_id", repo_id)
    with tempfile.TemporaryDirectory(prefix="mv2d3d-push-") as tmp:
        folder = save_pretrained(model, Path(tmp) / "model", **card_kwargs)
        # The tensors were just written from this model: no need to validate by reloading.
        return push_folder(
            folder, repo_id, private=private, token=token, revision=revision, commit_message=commit_message,
            endpoint=endpoint, create_pr=create_pr, validate=False,
        )
