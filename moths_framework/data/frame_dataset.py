"""Torch dataset over trap frames with boxes; a frame that does not decode is skipped.

An item is ``(image, target)``: the image a float tensor ``[3, H, W]`` in 0..1, the
target ``{"boxes": float32 [K, 4] xyxy pixels, "labels": int64 [K] (1..N; 0 is
background), "image_id": int}``, which torchvision's detection models take as
they are. A frame with no moth has ``K = 0``. Batches are lists
(:func:`collate_frames`): frames differ in size and in box count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from moths_framework.data.coco import Frame
from moths_framework.data.frame_transforms import frame_transform
from moths_framework.images import ImageDecodeError, decode_rgb

__all__ = ["FrameBatch", "FrameDataset", "FrameSizeError", "collate_frames"]

log = logging.getLogger(__name__)

Target = dict[str, torch.Tensor | int]


class FrameSizeError(ValueError):
    """A frame whose decoded size differs from the size its annotations were drawn on."""


class FrameBatch(NamedTuple):
    """Frames of one batch, as lists.

    Attributes:
        images: ``[3, H, W]`` float tensors, sizes may differ.
        targets: one target dict per image (see the module docstring).
        skipped: frames of the batch that did not decode (logged by name).
    """

    images: list[torch.Tensor]
    targets: list[Target]
    skipped: int


class FrameDataset(Dataset):
    """Decodes ``frames[i]`` and returns ``(image, target)``, augmented by ``transform``.

    Args:
        frames: the frames (from :func:`~moths_framework.data.coco.read_coco`).
        labels: each frame's label per box (1..N), in the order of its boxes.
        augmentations: ``torchvision.transforms.v2`` transforms, in order; the
            finishing steps of :func:`~moths_framework.data.frame_transforms.finish_frame`
            always follow.
        max_side: shrink frames whose longer side is larger to this many pixels, boxes
            alike (JPEGs decode at reduced scale: much faster for 4K frames); ``None``
            keeps every frame at its size.
    """

    def __init__(
        self,
        frames: Sequence[Frame],
        labels: Sequence[Sequence[int]],
        augmentations: Sequence[Callable] = (),
        max_side: int | None = None,
    ) -> None:
        if len(frames) != len(labels):
            raise ValueError(f"{len(frames)} frames but {len(labels)} label lists")
        self.frames = frames
        self.labels = labels
        self.transform = frame_transform(augmentations)
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target] | None:
        frame = self.frames[i]
        try:
            image, factor = self._decode(frame)
        except ImageDecodeError as err:
            log.warning("skipping a frame that does not decode: %s", err)
            return None
        boxes = torch.tensor(frame.boxes, dtype=torch.float32).reshape(-1, 4)
        boxes = tv_tensors.BoundingBoxes(
            boxes * torch.tensor([factor[0], factor[1]] * 2),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=(image.height, image.width),
        )
        labels = torch.as_tensor(list(self.labels[i]), dtype=torch.int64)
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        out, target = self.transform(tv_tensors.Image(pixels), {"boxes": boxes, "labels": labels})
        return out.as_subclass(torch.Tensor), {
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": target["labels"],
            "image_id": frame.image_id,
        }

    def _decode(self, frame: Frame) -> tuple[Image.Image, tuple[float, float]]:
        """The RGB frame, shrunk to ``max_side`` if larger, and the (x, y) scale applied."""
        size = (frame.width, frame.height)
        scale = 1.0
        if self.max_side is not None and max(size) > self.max_side:
            scale = self.max_side / max(size)
        target = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        decoded = decode_rgb(frame.path, draft_size=target if scale < 1 else None)
        if decoded.full_size != size:
            raise FrameSizeError(
                f"{frame.path} is {decoded.full_size[0]}x{decoded.full_size[1]} as decoded "
                f"(EXIF orientation applied) but its annotations say {size[0]}x{size[1]}: "
                "fix the image's width and height in the COCO file"
            )
        image = decoded.image
        if image.size != target:
            image = image.resize(target, Image.Resampling.BILINEAR)
        return image, (target[0] / size[0], target[1] / size[1])


def collate_frames(items: list[tuple[torch.Tensor, Target] | None]) -> FrameBatch:
    """Lists of the decoded frames and their targets; frames that did not decode counted."""
    good = [item for item in items if item is not None]
    return FrameBatch([i for i, _ in good], [t for _, t in good], len(items) - len(good))
