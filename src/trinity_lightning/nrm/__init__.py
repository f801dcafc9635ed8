"""Neural Rendering Model (Ho et al., 2018): a CNN and its weight-sharing renderer, trained semi-supervised.

``NRM`` is the LightningModule (cross-entropy, reconstruction, rendering path normalization, max-min
cross-entropy; ``METHODS`` names its baselines and ablations, e.g. ``NRM(method="two_path_ce")``),
``RenderingCNN`` the network, ``SemiSupervisedDataModule`` the labelled + unlabelled data (``augment=True``:
random crop + flip of the training batches on the device, ``random_crop_flip``/``crop_flip``), and
``render_grid``/``save_grid``/``save_tiles`` render images from classes and latent choices, and the
``RenderSamples`` callback writes such a grid when ``fit`` ends. See docs/nrm.md.
"""

from trinity_lightning.nrm.augment import crop_flip, random_crop_flip
from trinity_lightning.nrm.datamodule import SemiSupervisedDataModule, stratified_split, to_tensors
from trinity_lightning.nrm.losses import max_min_cross_entropy, reconstruction_loss, rendering_path_normalization
from trinity_lightning.nrm.module import METHODS, NRM, resolve_method
from trinity_lightning.nrm.network import InferencePath, Latents, RenderingCNN, parse_layers
from trinity_lightning.nrm.sampling import RenderSamples, render_grid, save_grid, save_tiles

__all__ = [
    "METHODS",
    "NRM",
    "InferencePath",
    "Latents",
    "RenderSamples",
    "RenderingCNN",
    "SemiSupervisedDataModule",
    "crop_flip",
    "max_min_cross_entropy",
    "parse_layers",
    "random_crop_flip",
    "reconstruction_loss",
    "render_grid",
    "rendering_path_normalization",
    "resolve_method",
    "save_grid",
    "save_tiles",
    "stratified_split",
    "to_tensors",
]
