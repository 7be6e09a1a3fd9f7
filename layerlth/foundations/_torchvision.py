"""Import torchvision even where its compiled extension does not match torch.

torchvision's wheels are CUDA builds; on a CPU-only torch their extension fails to load and
`import torchvision` then dies registering fake kernels for `torchvision::nms`/`qnms`, ops whose
schemas the extension was meant to define. We define just those schemas and import again.
Where the extension loads, the first import succeeds and nothing here runs.
"""

import sys

import torch

_MISSING_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the schema definitions alive


def _define_missing_schemas():
    global _library
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _MISSING_SCHEMAS:
        if not hasattr(torch.ops.torchvision, schema.split("(")[0]):
            _library.define(schema)


def import_torchvision():
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _define_missing_schemas()
        import torchvision
    return torchvision


torchvision = import_torchvision()
