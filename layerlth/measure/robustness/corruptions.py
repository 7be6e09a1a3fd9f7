"""Common corruptions in CIFAR-10-C's layout: a folder with one `<corruption>.npy` of images
(N, H, W, C) uint8 per corruption, severities 1..5 in consecutive blocks of N / 5, and `labels.npy`.

The layout comes from the CIFAR-10-C archive, or is generated here for data that has no -C version
(a user's .npz, the digits, machines without the archive) by `imagecorruptions-imaug`: the same
corruption names and severities applied to the test set. Its parameters are ImageNet-scale, so a
generated set is never labelled or compared as CIFAR-10-C. It is generated once per dataset and
cached under the data root.
"""

import hashlib
import logging
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from filelock import FileLock

from layerlth.foundations.atomic import write_atomic, write_json_atomic

log = logging.getLogger("layerlth")
# Hendrycks & Dietterich 2019: the 15 benchmark corruptions, then the 4 held-out ("extra") ones
STANDARD = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
            "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
            "jpeg_compression")
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL = STANDARD + EXTRA
SEVERITIES = (1, 2, 3, 4, 5)
COMPLETE = "complete.json"  # written last in a generated folder
MIN_SIDE = 32  # the library refuses smaller images


@dataclass
class CorruptionSet:
    """A folder in CIFAR-10-C's layout; `source` is "archive" or "generated"."""

    folder: Path
    source: str

    def __post_init__(self):
        self.folder = Path(self.folder)
        missing = [f"{n}.npy" for n in (*ALL, "labels") if not (self.folder / f"{n}.npy").is_file()]
        if missing:
            raise ValueError(f"{self.folder} lacks {missing}; a corruption folder has one .npy per corruption "
                             f"({', '.join(ALL)}) and labels.npy")
        self.labels = np.load(self.folder / "labels.npy")
        if len(self.labels) % len(SEVERITIES):
            raise ValueError(f"{self.folder}/labels.npy has {len(self.labels)} labels, not 5 severities' blocks")
        self.per_severity = len(self.labels) // len(SEVERITIES)

    def images(self, corruption, severity):
        """(images (n, H, W, C) uint8, labels) of one corruption at one severity, read from disk."""
        if corruption not in ALL or severity not in SEVERITIES:
            raise ValueError(f"no corruption {corruption!r} at severity {severity}; allowed: {ALL} x {SEVERITIES}")
        array = np.load(self.folder / f"{corruption}.npy", mmap_mode="r")  # 150 MB each in the archive
        if len(array) != len(self.labels) or array.dtype != np.uint8 or array.ndim != 4:
            raise ValueError(f"{self.folder}/{corruption}.npy: expected {len(self.labels)} uint8 images (N, H, W, C), "
                             f"got {array.dtype} {array.shape}")
        block = slice((severity - 1) * self.per_severity, severity * self.per_severity)
        return np.array(array[block]), self.labels[block]  # read into memory


def corrupt_images(images, corruption, severity, seed=0):
    """`images` (N, H, W, C) uint8 corrupted one by one, each with its own seed (reproducible).
    Images smaller than 32 pixels are enlarged by pixel repetition, corrupted, and box-averaged back;
    a grey image is corrupted as RGB and averaged back to one channel."""
    from imagecorruptions import corruption_dict
    from PIL import Image

    n, height, width, channels = images.shape
    scale = -(-MIN_SIDE // min(height, width))
    out = np.empty_like(images)
    for index, image in enumerate(images):
        big = image.repeat(scale, 0).repeat(scale, 1)
        big = np.repeat(big, 3, 2) if channels == 1 else big
        # noise and most corruptions draw from numpy's global generator; two take their own seed
        np.random.seed((seed * 1_000_003 + index * 101 + severity) % 2**32)
        seeded = {"seed": seed * 1_000_003 + index} if corruption in ("glass_blur", "impulse_noise") else {}
        # spatter divides by its largest drop, 0/0 when a small image gets no drop: leave it clean
        with np.errstate(invalid="ignore", divide="ignore"):
            done = np.asarray(corruption_dict[corruption](Image.fromarray(big), severity, **seeded), np.float32)
        done = np.where(np.isfinite(done), done, big)
        if channels == 1:
            done = done.mean(2, keepdims=True)
        done = done.reshape(height, scale, width, scale, channels).mean((1, 3))
        out[index] = np.clip(np.rint(done), 0, 255).astype(np.uint8)
    return out


def generated_folder(data, images, root):
    """Where the corruptions of `data`'s first `images` test images are cached: named after the
    dataset, a digest of those images and the library's version."""
    test_x = data.test_x[:images].cpu().numpy()
    digest = hashlib.sha256(test_x.tobytes() + version("imagecorruptions-imaug").encode()).hexdigest()[:12]
    return Path(root) / "corruptions-generated" / f"{data.name}-{len(test_x)}-{digest}"


def generated(data, images, root):
    """The CorruptionSet of `data`'s first `images` test images, generated the first time."""
    folder = generated_folder(data, images, root)
    if not (folder / COMPLETE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / ".lock")):
            if not (folder / COMPLETE).is_file():
                generate(data, images, folder)
    return CorruptionSet(folder, "generated")


def generate(data, images, folder):
    test_x = data.test_x[:images].permute(0, 2, 3, 1).cpu().numpy()
    labels = data.test_y[:images].cpu().numpy()
    log.info("generating %d corruptions x %d severities of %d %s test images into %s (once)",
             len(ALL), len(SEVERITIES), len(test_x), data.name, folder)
    for corruption in ALL:
        blocks = np.concatenate([corrupt_images(test_x, corruption, s) for s in SEVERITIES])
        write_atomic(folder / f"{corruption}.npy", lambda handle, a=blocks: np.save(handle, a))
    write_atomic(folder / "labels.npy", lambda handle: np.save(handle, np.tile(labels, len(SEVERITIES))))
    write_json_atomic({"dataset": data.name, "images": len(test_x), "corruptions": list(ALL),
                       "library": f"imagecorruptions-imaug {version('imagecorruptions-imaug')}"}, folder / COMPLETE)
