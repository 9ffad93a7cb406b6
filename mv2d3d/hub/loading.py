"""``load``: the one door to every model (zoo name, local folder or Hub repo id).

Work in progress: architecture-only loading; weights loading is built in the Hub issue.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Union

import torch

from ..models import PointEncoder
from .registry import get_entry

logger = logging.getLogger(__name__)


def load_model(
    name_or_path: str,
    *,
    model_class: type = PointEncoder,
    pretrained: bool = True,
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[torch.dtype] = None,
    **kwargs: Any,
):
    entry = get_entry(name_or_path)
    if pretrained:
        raise NotImplementedError("pretrained weights: Hub issue")
    model = PointEncoder(entry.config)
    return model.to(device=device, dtype=dtype).eval()


def load(name_or_path: str, **kwargs: Any) -> PointEncoder:
    """Load an encoder; see :func:`load_model`."""
    return load_model(name_or_path, **kwargs)
