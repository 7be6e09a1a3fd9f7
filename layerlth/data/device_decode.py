"""Decoding a streamed dataset's JPEGs on the GPU (nvJPEG through torchvision.io.decode_jpeg).

With `data_decode: cuda` the DataLoader workers do not decode: they read each image's header for its
size, draw its crop and flip exactly as the CPU path does (the same generators, in the same order),
and hand over the encoded bytes with that plan (`Planned`). The training process decodes a batch's
JPEGs in one batched nvJPEG call on the device and crops, resizes (bilinear, antialiased) and flips
each image there (`assemble`). An image that is not a JPEG (a PNG) is decoded and transformed by
its worker as on the CPU path and travels as pixels. A JPEG the GPU cannot decode is skipped and
counted, as a corrupt image is on the CPU path.

The crops are the CPU path's; the pixels differ by the two resizers' rounding (Pillow's on the CPU,
torch's on the GPU), so the decode path is a setting of how a trial runs, not part of its hash.
"""

import io

import torch
import torch.nn.functional as F

JPEG, PIXELS = 0, 1  # how an image travels: encoded (decoded on the device), or as transformed pixels
PLAN = 5  # train: (top, left, height, width, flip); evaluation: (resized height, width, top, left, 0)


class Planned:
    """A run of images as the workers hand them over: their bytes in one uint8 tensor (one transfer,
    not one per image), where each starts and ends, how it travels and its plan."""

    def __init__(self, data, offsets, kinds, plans):
        self.data, self.offsets, self.kinds, self.plans = data, offsets, kinds, plans

    @classmethod
    def of(cls, items):
        """From [(kind, bytes or a uint8 tensor, plan)]."""
        blobs = [torch.frombuffer(bytearray(b), dtype=torch.uint8) if isinstance(b, bytes) else b.flatten()
                 for _, b, _ in items]
        offsets = torch.tensor([0, *torch.tensor([len(b) for b in blobs]).cumsum(0).tolist()], dtype=torch.long)
        data = torch.cat(blobs) if blobs else torch.zeros(0, dtype=torch.uint8)
        kinds = torch.tensor([k for k, _, _ in items], dtype=torch.long)
        plans = torch.tensor([p for _, _, p in items], dtype=torch.long).view(-1, PLAN)
        return cls(data, offsets, kinds, plans)

    def __len__(self):
        return len(self.kinds)

    def item(self, n):
        return self.data[self.offsets[n]:self.offsets[n + 1]]

    def __getitem__(self, index):
        """The images a boolean mask, a slice or a list of positions picks, as a new `Planned`."""
        positions = torch.arange(len(self))[index].view(-1).tolist()  # an int index: one image
        return Planned.of([(int(self.kinds[n]), self.item(n), self.plans[n].tolist()) for n in positions])

    @staticmethod
    def cat(parts):
        items = [(int(p.kinds[n]), p.item(n), p.plans[n].tolist()) for p in parts for n in range(len(p))]
        return Planned.of(items)


def jpeg_size(data):
    """(width, height) of a JPEG from its header (nothing decoded), or None if it is no JPEG or its
    header does not read."""
    from PIL import Image, UnidentifiedImageError

    if data[:2] != b"\xff\xd8":
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size if image.format == "JPEG" else None
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def eval_plan(width, height, size, crop):
    """Resize the short side to size / crop, then centre-crop: the CPU path's evaluation rule."""
    short = round(size / crop)
    scale = short / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    return [new_h, new_w, (new_h - size) // 2, (new_w - size) // 2, 0]


def nvjpeg(blobs, device):
    """The images decoded on `device`, RGB uint8 (3, H, W) each, in one batched call."""
    from layerlth.foundations._torchvision import torchvision

    return torchvision.io.decode_jpeg(blobs, device=device, mode=torchvision.io.ImageReadMode.RGB)


def assemble(planned, size, train, device):
    """The batch as uint8 (N, 3, size, size) on `device`, and a mask of the images that decoded."""
    out = torch.zeros(len(planned), 3, size, size, dtype=torch.uint8, device=device)
    ok = torch.ones(len(planned), dtype=torch.bool)
    pixels = [n for n in range(len(planned)) if planned.kinds[n] == PIXELS]
    if pixels:
        out[pixels] = torch.stack([planned.item(n).view(3, size, size) for n in pixels]).to(device)
    jpegs = [n for n in range(len(planned)) if planned.kinds[n] == JPEG]
    for n, image in zip(jpegs, _decode_all([planned.item(n) for n in jpegs], device)):
        if image is None:
            ok[n] = False
        else:
            out[n] = _planned(image, planned.plans[n].tolist(), size, train)
    return out, ok


def _decode_all(blobs, device):
    """Decoded images in order, None for one that does not decode (then each is tried alone).
    `nvjpeg` is looked up at each call: the tests put a CPU decoder in its place."""
    if not blobs:
        return []
    try:
        return nvjpeg(blobs, device)
    except RuntimeError:
        return [_decode_one(blob, device) for blob in blobs]


def _decode_one(blob, device):
    try:
        return nvjpeg([blob], device)[0]
    except RuntimeError:
        return None


def _planned(image, plan, size, train):
    """One decoded image cropped, resized and flipped as its plan says."""
    if train:
        top, left, h, w, flip = plan
        image = _resized(image[:, top:top + h, left:left + w], size, size)
        return image.flip(2) if flip else image
    new_h, new_w, top, left, _ = plan
    return _resized(image, new_h, new_w)[:, top:top + size, left:left + size]


def _resized(image, height, width):
    x = F.interpolate(image[None].float(), size=(height, width), mode="bilinear", antialias=True,
                      align_corners=False)
    return x[0].round_().clamp_(0, 255).to(torch.uint8)
