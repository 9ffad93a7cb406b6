"""Base class of every mv2d3d model: config, strict state-dict loading, and the
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` methods.

The three Hub-facing methods are thin doors into :mod:`mv2d3d.hub`, imported lazily so that
this layer (and ``import mv2d3d``) never pulls in the Hub client; the logic lives there.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Iterable, Mapping, Union

import torch
import torch.nn as nn

from ..errors import CheckpointMismatchError

logger = logging.getLogger(__name__)


class PretrainedModel(nn.Module):
    """An ``nn.Module`` with a dataclass ``config`` that can be saved, loaded and published."""

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    config: Any

    def load_state_dict_strict(
        self, state_dict: Mapping[str, torch.Tensor], *, allow_new: Iterable[str] = (), source: str = "checkpoint"
    ) -> list:
        """Load every tensor of ``state_dict`` and fill every parameter and buffer.

        Args:
            allow_new: key prefixes that may be absent from the checkpoint (a rebuilt task
                head); they keep their fresh initialisation and are logged by name.
            source: where the tensors came from, for messages.

        Returns:
            The names of the tensors that were not in the checkpoint (all under ``allow_new``).

        Raises:
            CheckpointMismatchError: missing, unexpected or mis-shaped tensors.
        """
        own = self.state_dict()
        allow = tuple(allow_new)
        missing = [k for k in own if k not in state_dict]
        unexpected = sorted(k for k in state_dict if k not in own)
        mismatched = sorted(
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in state_dict.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        )
        new = [k for k in missing if allow and k.startswith(allow)]
        missing = [k for k in missing if k not in new]
        if missing or unexpected or mismatched:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)}: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
            if unexpected:
                parts.append(f"unexpected {len(unexpected)}: {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
            if mismatched:
                parts.append(f"wrong shape {len(mismatched)}: {mismatched[:8]}")
            raise CheckpointMismatchError(
                f"{source} does not match {type(self).__name__}({self.config_summary()}): "
                + "; ".join(parts)
                + ". Check that config.json belongs to these weights; foreign checkpoints are "
                "imported with `mv2d3d convert`.",
                missing=missing,
                unexpected=unexpected,
                mismatched=mismatched,
            )
        merged = dict(state_dict)
        for k in new:
            merged[k] = own[k]
        self.load_state_dict(merged, strict=True)
        if new:
            logger.info("%s: %d tensor(s) newly initialised (not in %s): %s", type(self).__name__, len(new), source, new)
        return new

    def config_summary(self) -> str:
        cfg = getattr(self, "config", None)
        enc = getattr(cfg, "encoder", cfg)
        if enc is None or not hasattr(enc, "embed_dim"):
            return ""
        return f"embed_dim={enc.embed_dim}, depth={enc.depth}, num_heads={enc.num_heads}"

    # -- Hub doors ---------------------------------------------------------------------------
    def save_pretrained(self, save_directory: Union[str, "os.PathLike[str]"], **card_kwargs: Any) -> str:  # noqa: F821
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card into
        ``save_directory``, atomically (an interrupted save leaves any old folder intact).

        Keyword arguments go to the model card (e.g. ``base_model``, ``datasets``,
        ``metrics``, ``command``). Returns the folder path.
        """
        from ..hub import save_pretrained

        return save_pretrained(self, save_directory, **card_kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Save into a temporary folder and upload it to ``repo_id`` as one commit.

        See :func:`mv2d3d.hub.push_to_hub` for the options. Returns the commit URL.
        """
        from ..hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any):
        """Load from a zoo name, a local folder or a Hub repo id (see :func:`mv2d3d.load`)."""
        from ..hub import load_model

        return load_model(name_or_path, model_class=cls, **kwargs)
