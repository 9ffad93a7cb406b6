"""Pretraining parts: multi-view renderer, frozen 2D teacher, masked student, heads, losses,
pretraining data and the recipe config. The loop itself is :mod:`mv2d3d.train.pretrainer`.

Nothing here is imported by ``import mv2d3d``.
"""

from .config import PretrainConfig as PretrainConfig
from .config import list_recipes as list_recipes
from .config import load_recipe as load_recipe
from .losses import chamfer_l2 as chamfer_l2
from .losses import feature_loss as feature_loss
from .render import render_depth as render_depth
from .render import save_view_grid as save_view_grid

__all__ = ["PretrainConfig", "list_recipes", "load_recipe", "chamfer_l2", "feature_loss", "render_depth", "save_view_grid"]
