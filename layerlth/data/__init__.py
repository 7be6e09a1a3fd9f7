"""Datasets (as uint8 tensors) and device-side batching."""

from layerlth.data.batches import Batches
from layerlth.data.images import ImageData
from layerlth.data.sources import (
    HELP,
    DatasetUnavailable,
    check_dataset,
    default_root,
    image_shape,
    load_dataset,
    synthetic,
)

__all__ = ["HELP", "Batches", "DatasetUnavailable", "ImageData", "check_dataset", "default_root", "image_shape", "load_dataset", "synthetic"]
