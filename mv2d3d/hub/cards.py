"""Model cards: ``README.md`` with Hub metadata, rendered from templates.

Templates live in ``mv2d3d/model_cards/`` (package data, so they are found after a wheel
install); the repository's top-level ``model_cards/`` is a symlink to that folder, the single
source of truth. ``generic.md`` serves user-trained, fine-tuned and converted models; each zoo
entry has its own (``ZooEntry.card``); both embed ``_sections.md`` (usage, model, training,
evaluation). Rendering goes through ``huggingface_hub.ModelCard.from_template`` (Jinja2) with
a ``ModelCardData`` YAML header: ``library_name: mv2d3d``, tags, license, datasets,
``base_model`` and, when metrics are given, ``model-index``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from .. import __version__
from ..errors import ConfigError
from .registry import CARD_TEMPLATES_DIR, get_entry, is_zoo_name

logger = logging.getLogger(__name__)

#: Keyword arguments ``save_pretrained`` / ``push_to_hub`` accept for the card.
CARD_KWARGS = (
    "base_model", "datasets", "metrics", "command", "recipe", "training_data", "license", "tags", "notes",
    "class_names", "template", "model_id",
)

BASE_TAGS = ["mv2d3d", "point-cloud", "3d", "feature-extraction"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")

# The usage snippet's load call; `retarget_card` rewrites its id when a folder is pushed.
_SNIPPET_ID = re.compile(r'(mv2d3d\.load\(|PointClassifier\.from_pretrained\(|mv2d3d\.hub\.load_model\()"([^"]+)"')


def usage_snippet(architecture: str, model_id: str) -> str:
    """Python that loads ``model_id`` and runs it on a random cloud (tested to run)."""
    if architecture == "PointEncoder":
        return (
            "import torch\n"
            "import mv2d3d\n\n"
            f'model = mv2d3d.load("{model_id}")   # eval mode; device=..., dtype=... optional\n'
            "points = torch.rand(2, 2048, 3)      # [B, N, 3] xyz\n"
            "with torch.inference_mode():\n"
            "    out = model(points)\n"
            "print(out.global_features.shape)     # [B, D] pooled features\n"
            "print(out.patch_features.shape)      # [B, G, C]"
        )
    if architecture == "PointClassifier":
        return (
            "import torch\n"
            "import mv2d3d\n\n"
            f'model = mv2d3d.PointClassifier.from_pretrained("{model_id}")\n'
            "points = torch.rand(2, 2048, 3)      # [B, N, 3] xyz\n"
            "probs = model.predict(points)        # [B, num_classes]\n"
            "print([model.class_names[i] for i in probs.argmax(-1).tolist()])"
        )
    cls = architecture
    return (
        "import torch\n"
        "import mv2d3d\n"
        f"from mv2d3d.models import {cls}\n\n"
        f'model = mv2d3d.hub.load_model("{model_id}", model_class={cls})\n'
        "points = torch.rand(2, 2048, 3)\n"
        "with torch.inference_mode():\n"
        "    out = model(points)"
    )


def _eval_results(metrics: Sequence[Mapping[str, Any]], architecture: str):
    from huggingface_hub import EvalResult

    task = "feature-extraction" if architecture == "PointEncoder" else "classification"
    out = []
    for i, m in enumerate(metrics):
        if not isinstance(m, Mapping) or not {"name", "type", "value", "dataset"} <= set(m):
            raise ConfigError(
                f"metrics[{i}] = {m!r}: each metric is a dict with keys name, type, value, dataset, e.g. "
                "{'name': 'linear-SVM accuracy', 'type': 'accuracy', 'value': 0.91, 'dataset': 'modelnet40'}."
            )
        out.append(
            EvalResult(
                task_type=task,
                dataset_type=str(m["dataset"]),
                dataset_name=str(m["dataset"]),
                metric_type=str(m["type"]),
                metric_value=m["value"],
                metric_name=str(m["name"]),
            )
        )
    return out


def _template_path(template: Optional[Union[str, Path]]) -> Path:
    if template is None:
        return CARD_TEMPLATES_DIR / "generic.md"
    if isinstance(template, str) and is_zoo_name(template):
        return get_entry(template).card_path
    path = Path(template)
    if not path.is_file():
        path = CARD_TEMPLATES_DIR / str(template)
    if not path.is_file():
        raise ConfigError(
            f"Model card template {template!r} not found: pass a zoo name, a file in {CARD_TEMPLATES_DIR}, or a path."
        )
    return path


def render_card(
    model: Any,
    *,
    model_id: str,
    base_model: Optional[str] = None,
    datasets: Optional[Union[str, List[str]]] = None,
    metrics: Optional[Sequence[Mapping[str, Any]]] = None,
    command: Optional[str] = None,
    recipe: Optional[str] = None,
    training_data: Optional[str] = None,
    license: str = "apache-2.0",
    tags: Optional[Sequence[str]] = None,
    notes: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    template: Optional[Union[str, Path]] = None,
):
    """Render the model card of ``model`` as a ``huggingface_hub.ModelCard``.

    Args:
        model_id: the id the usage snippet loads (Hub repo id, or the folder as given).
        base_model: checkpoint this one derives from (default: ``config.base_model``).
        metrics: ``[{"name", "type", "value", "dataset"}, ...]`` -> table + ``model-index``.
        template: zoo name or template file (default: ``generic.md``).
    """
    from huggingface_hub import ModelCard, ModelCardData

    cfg = model.config
    enc = getattr(cfg, "encoder", cfg)
    architecture = model.architecture
    base_model = base_model or getattr(cfg, "base_model", None)
    if class_names is None and getattr(cfg, "class_names", None):
        class_names = list(cfg.class_names)
    all_tags = list(BASE_TAGS) + (["classification"] if architecture == "PointClassifier" else [])
    all_tags += [t for t in (tags or []) if t not in all_tags]
    # The Hub wants a model id in `base_model`; a local path is named in the text only.
    yaml_base = base_model if base_model and _HUB_ID.match(base_model) else None
    data = ModelCardData(
        library_name="mv2d3d",
        license=license,
        tags=all_tags,
        datasets=[datasets] if isinstance(datasets, str) else (list(datasets) if datasets else None),
        base_model=yaml_base,
        model_name=model_id if metrics else None,
        eval_results=_eval_results(metrics, architecture) if metrics else None,
    )
    base_url = f"https://huggingface.co/{yaml_base}" if yaml_base else None
    values: Dict[str, Any] = dict(
        model_id=model_id,
        architecture=architecture,
        mv2d3d_version=__version__,
        usage=usage_snippet(architecture, model_id),
        embed_dim=enc.embed_dim,
        depth=enc.depth,
        num_heads=enc.num_heads,
        num_points=enc.num_points,
        num_groups=enc.num_groups,
        group_size=enc.group_size,
        global_dim=2 * enc.embed_dim,
        num_params=f"{sum(p.numel() for p in model.parameters()):,}",
        num_classes=getattr(cfg, "num_classes", None),
        class_names=list(class_names) if class_names else None,
        base_model=base_model,
        base_model_url=base_url,
        recipe=recipe,
        command=command,
        training_data=training_data,
        metrics=list(metrics or []),
        notes=notes,
    )
    # The shared sections have no YAML block of their own: render them with Jinja2 directly
    # (the engine ModelCard.from_template uses), then embed them in the entry's template.
    import jinja2

    sections = jinja2.Template((CARD_TEMPLATES_DIR / "_sections.md").read_text(encoding="utf-8")).render(**values)
    return ModelCard.from_template(data, template_path=str(_template_path(template)), sections=sections.strip(), **values)


def retarget_card(text: str, model_id: str) -> str:
    """Point the usage snippet of a rendered card at ``model_id`` (used when a folder is pushed)."""
    return _SNIPPET_ID.sub(lambda m: f'{m.group(1)}"{model_id}"', text)
