"""Mask R-CNN, Mask Scoring R-CNN and Keypoint R-CNN in pure PyTorch."""

from .api import load_model
from .config import Config
from .model.detector import MaskRCNN, build_model
from .structures import ImageList, Instances
from .weights import save_weights

__version__ = "0.1.0"
__all__ = ["Config", "ImageList", "Instances", "MaskRCNN", "build_model", "load_model", "save_weights", "__version__"]
