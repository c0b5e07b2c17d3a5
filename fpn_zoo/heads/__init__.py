"""Detection-head pieces that differ from torchvision's defaults."""

from fpn_zoo.heads.soft_roi_selection import SoftRoISelection

__all__ = ["SoftRoISelection"]
