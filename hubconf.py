"""torch.hub entrypoints of fpn_zoo: one per registered model.

    >>> import torch
    >>> torch.hub.list("fpn-zoo/fpn-zoo")
    >>> model = torch.hub.load("fpn-zoo/fpn-zoo", "fpn_r50_coco", pretrained=True)  # COCO weights, GPU when present

Importing this file does no network access and builds nothing: entrypoints defer all work to
``fpn_zoo.create_model``.
"""

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub", "filelock", "PIL"]

from fpn_zoo import hub_entrypoints as _hub_entrypoints  # noqa: E402 - `dependencies` stays the first statement

globals().update(_hub_entrypoints())
