"""ImageNet (ILSVRC-2012) in the torchvision ``ImageFolder`` layout, lazily decoded, and ImageNet-O
(an unlabeled OOD image tree) with the same preprocessing.

``imagenet``: ``ROOT/train/<wnid>/*.JPEG`` and ``ROOT/val/<wnid>/*.JPEG`` (the labelled validation set
sorted into class folders, e.g. by the usual ``valprep.sh``); classes = the sorted training wnids (1000
for the real data, any number works). ``val`` is the test split (the trainer's ``val`` is split off the
training set by ``data.val_size``). ``data.image_size`` defaults to 224; use ``data.augment=imagenet``
for RandomResizedCrop + flip (evaluation always uses Resize(256/224·size) + CenterCrop(size)).
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from .base import Source, register_dataset, require_dir
from .decode import list_images
from .files import FileDataset, scan_class_folders

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224


@register_dataset("imagenet")
def imagenet(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """ImageNet ``ROOT/{train,val}/<wnid>/<images>``; nothing is decoded up front."""
    p = require_dir(root, flag, "ImageNet folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    size = int(image_size or DEFAULT_SIZE)
    classes, tr_files, tr_y = scan_class_folders(p / "train", flag, "ImageNet training split")
    val_classes, te_files, te_y = scan_class_folders(p / "val", flag, "ImageNet validation split")
    index = {w: i for i, w in enumerate(classes)}
    unknown = [w for w in val_classes if w not in index]
    if unknown:
        raise DatasetError(f"{flag}: {p / 'val'} has class folders not in {p / 'train'}: {', '.join(unknown[:5])}"
                           + (" ..." if len(unknown) > 5 else ""))
    te_y = np.array([index[val_classes[c]] for c in te_y], dtype=np.int64)
    return Source(
        test=FileDataset(p / "val", te_files, te_y, "imagenet_test", size, flag),
        train=FileDataset(p / "train", tr_files, tr_y, "imagenet_train", size, flag),
        num_classes=len(classes), mean=IMAGENET_MEAN, std=IMAGENET_STD, in_channels=3, image_size=size, classes=classes,
    )


@register_dataset("imagenet_o")
def imagenet_o(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """An unlabeled OOD image tree (ImageNet-O: ``ROOT/<wnid>/*.JPEG``; any nesting), lazily decoded with
    the ImageNet eval transform at the in-domain ``image_size``."""
    p = require_dir(root, flag, "ImageNet-O folder")
    files = list_images(p, recursive=True)
    if not files:
        raise DatasetError(f"{flag}={root}: no image files found (ImageNet-O layout ROOT/<wnid>/*.JPEG)")
    size = int(image_size or DEFAULT_SIZE)
    return Source(test=FileDataset(p, files, np.full(len(files), -1), "imagenet_o", size, flag), image_size=size)
