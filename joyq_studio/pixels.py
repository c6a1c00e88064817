"""Model input tensors: the decoded image as uint8 CHW, normalised on the device.

The one decoder is :mod:`joyq_studio.images`; this module only turns its RGB result into
torch tensors (kept apart so that modules which never run the model need no torch).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .images import load_rgb, resize_for_model


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor [3, H, W]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def load_uint8(path: str | os.PathLike, size: int) -> torch.Tensor:
    """File -> uint8 tensor [3, size, size] ready for :func:`normalize`."""
    return pil_to_uint8(resize_for_model(load_rgb(path), size))


def normalize(batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> [-1, 1] (mean 0.5, std 0.5); run it on the device."""
    return batch.to(dtype).div_(127.5).sub_(1.0)
