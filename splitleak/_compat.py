"""Import torchvision on every supported torch build.

torchvision wheels built for CUDA torch fail to import beside the CPU-only torch wheel
("operator torchvision::nms does not exist"): their compiled ops do not load, and the Python
package then trips over the missing operator schemas. Declaring those schemas (no kernels) lets
datasets, transforms, models and utils import; only the compiled ops (nms, roi_align, ...) stay
unavailable, and splitleak uses none of them.
"""

from __future__ import annotations

import importlib
import logging
import sys
from types import ModuleType

import torch

log = logging.getLogger(__name__)

_MISSING_OP = "torchvision::nms does not exist"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_fragment: torch.library.Library | None = None


def _forget_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, declaring missing op schemas if its ops did not load."""
    global _fragment
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as err:
        if _MISSING_OP not in str(err) or _fragment is not None:
            raise
    log.info("torchvision's compiled ops did not load; declaring their schemas so it imports")
    _forget_torchvision()
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _fragment.define(schema)
    return importlib.import_module("torchvision")
