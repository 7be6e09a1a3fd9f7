"""Decoding a streamed dataset's JPEGs on the GPU (nvJPEG through torchvision.io.decode_jpeg).

With `data_decode: cuda` the DataLoader workers do not decode: they read each image's header for its
size, draw its crop and flip exactly as the CPU path does (the same generators, in the same order),
and hand over the encoded bytes with that plan (`Planned`). The training process decodes a batch's
JPEGs in one batched nvJPEG call on the device and crops, resizes (bilinear, antialiased) and flips
each image there (`assemble`).

Which images go to nvJPEG (`for_the_device`): baseline or progressive JPEGs in RGB or grayscale
that end with their end-of-image marker. The rest travel as the CPU path's pixels, decoded and
transformed by their worker: PNGs, CMYK and YCCK JPEGs (nvJPEG does not decode them; ImageNet's
training set has a few dozen), and truncated JPEGs (nvJPEG's hardware decoder parses only the
header first and may decode one to garbage instead of failing; Pillow refuses it, as on the CPU
path, so it is skipped and counted there). A JPEG that nvJPEG still refuses is decoded by Pillow on
the CPU and transformed on the device; only one Pillow cannot decode either is skipped and counted,
as a corrupt image is on the CPU path. Every other failure is not the image's and stops with its
own message: out of memory, torchvision without nvJPEG, nvJPEG's own allocation failures, and a
batch of which nvJPEG decodes nothing while Pillow decodes every image.

nvJPEG's hardware decoder does not honour the stream it is given (torchvision PR 9606): the current
stream is synchronised before each batched decode, so no kernel still queued can touch memory its
outputs are given.

The crops are the CPU path's; the pixels differ by the two resizers' rounding (Pillow's on the CPU,
torch's on the GPU), so the decode path is a setting of how a trial runs, not part of its hash.
"""

import io

import torch
import torch.nn.functional as F

JPEG, PIXELS = 0, 1  # how an image travels: encoded (decoded on the device), or as transformed pixels
PLAN = 5  # train: (top, left, height, width, flip); evaluation: (resized height, width, top, left, 0)
DEVICE_MODES = ("RGB", "L")  # JPEG colour modes nvJPEG decodes to RGB
END_OF_IMAGE = b"\xff\xd9"


class DecodeFailure(RuntimeError):
    """nvJPEG failed for a reason that is not an image's: the trial stops with it."""


class Planned:
    """A run of images as the workers hand them over: their bytes in one uint8 tensor (one transfer,
    not one per image), where each starts and ends, how it travels and its plan. Slicing a range
    and joining runs cost views and one copy of the bytes, not Python per image."""

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
        """The images a slice (views: no copy), a boolean mask or a list of positions picks."""
        if isinstance(index, slice) and index.step in (None, 1):
            start, stop, _ = index.indices(len(self))
            stop = max(start, stop)
            offsets = self.offsets[start:stop + 1]
            return Planned(self.data[int(offsets[0]):int(offsets[-1])], offsets - offsets[0],
                           self.kinds[start:stop], self.plans[start:stop])
        positions = torch.arange(len(self))[index].view(-1).tolist()  # an int index: one image
        return Planned.of([(int(self.kinds[n]), self.item(n), self.plans[n].tolist()) for n in positions])

    @staticmethod
    def cat(parts):
        parts = [p for p in parts if len(p)] or parts[:1]
        if len(parts) == 1:
            return parts[0]
        shifts = torch.tensor([0, *[int(p.offsets[-1]) for p in parts[:-1]]]).cumsum(0)
        offsets = torch.cat([parts[0].offsets[:1], *[p.offsets[1:] + shift for p, shift in zip(parts, shifts)]])
        return Planned(torch.cat([p.data for p in parts]), offsets, torch.cat([p.kinds for p in parts]),
                       torch.cat([p.plans for p in parts]))


def for_the_device(data):
    """(width, height) of a JPEG nvJPEG is given (RGB or grayscale, complete), from its header
    (nothing decoded); None for any other image, which its worker decodes as the CPU path does."""
    from PIL import Image, UnidentifiedImageError

    if data[:2] != b"\xff\xd8" or not bytes(data[-16:]).rstrip(b"\x00\r\n ").endswith(END_OF_IMAGE):
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size if image.format == "JPEG" and image.mode in DEVICE_MODES else None
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


def pillow(blob, device):
    """One image decoded by Pillow on the CPU, RGB uint8 (3, H, W) on `device`; None if it does not
    decode (the CPU path's rule for a corrupt image)."""
    import numpy as np

    from layerlth.data.streams import decode

    image = decode(blob.numpy().tobytes())
    if image is None:
        return None
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).to(device)


def assemble(planned, size, train, device):
    """The batch as uint8 (N, 3, size, size) on `device`, and a CPU mask of the images that decoded."""
    out = torch.zeros(len(planned), 3, size, size, dtype=torch.uint8, device=device)
    ok = torch.ones(len(planned), dtype=torch.bool)
    kinds = planned.kinds.tolist()
    pixels = [n for n, kind in enumerate(kinds) if kind == PIXELS]
    if pixels:
        out[pixels] = torch.stack([planned.item(n).view(3, size, size) for n in pixels]).to(device)
    jpegs = [n for n, kind in enumerate(kinds) if kind == JPEG]
    plans = planned.plans.tolist()
    for n, image in zip(jpegs, decode_all([planned.item(n) for n in jpegs], device)):
        if image is None:
            ok[n] = False
        else:
            out[n] = _planned(image, plans[n], size, train)
    return out, ok


def decode_all(blobs, device):
    """Decoded images in order, None for one that does not decode. One batched nvJPEG call; if it
    fails, each image alone, and Pillow for one nvJPEG refuses. `nvjpeg` is looked up at each
    call: the tests put a CPU decoder in its place."""
    if not blobs:
        return []
    if torch.device(device).type == "cuda":
        torch.cuda.current_stream(device).synchronize()  # nvJPEG's hardware path ignores the stream
    try:
        return nvjpeg(blobs, device)
    except RuntimeError as error:
        _raise_unless_an_images(error)
    images, refused = [], 0
    for blob in blobs:
        try:
            images.append(nvjpeg([blob], device)[0])
            continue
        except RuntimeError as error:
            _raise_unless_an_images(error)
            first = error
        refused += 1
        images.append(pillow(blob, device))
    if len(blobs) > 1 and refused == len(blobs) and all(image is not None for image in images):
        raise DecodeFailure(f"nvJPEG decoded none of {len(blobs)} JPEGs that Pillow decodes: not the images' "
                            f"fault ({type(first).__name__}: {str(first).splitlines()[0][:200]})") from first
    return images


def _raise_unless_an_images(error):
    """Errors that say nothing of an image: out of memory, no nvJPEG, nvJPEG's own allocations."""
    text = str(error).lower()
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text:
        raise error
    if "not compiled" in text or "alloc" in text:
        raise DecodeFailure(f"nvJPEG failed, not for an image ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:200]}); use data_decode: cpu") from error


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
