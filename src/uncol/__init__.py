"""uncol: semi-supervised medical image segmentation with foundation-model teachers (UnCoL)."""
__version__ = "0.1.0"
