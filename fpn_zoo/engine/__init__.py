"""Engine: training and evaluation loops, and the helpers that run them on one or several processes.

Submodules are imported explicitly (``from fpn_zoo.engine.evaluate import coco_evaluate``), so ``import fpn_zoo``
and ``fpn-zoo --help`` never pay for torch, pycocotools or a process group.
"""
