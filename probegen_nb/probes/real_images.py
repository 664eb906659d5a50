"""Real images of another data set as fixed probes for CNN zoos, e.g. MNIST test digits padded to 32×32 for a
CIFAR10-GS zoo: the real-data baseline that reviewers of ProbeGen asked for, next to dead leaves and noise.

The config holds the data set's name and split, so `config.json` stays small and reads back exactly; `build` loads
the images through `core.data`, with the loaders and the [-1, 1], 32×32 conversion that the CNN zoo builder uses
for its own inputs. Those live in core, not zoos, because probes may import only core (tests/project/test_layout.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from probegen_nb.core.data import DATASETS, DatasetName, images_to_inputs, load_dataset
from probegen_nb.probes.base import FixedProbes, ProbeSource, image_channels

Split = Literal["train", "test"]


def match_channels(x: torch.Tensor, channels: int, source: str = "images") -> torch.Tensor:
    """[N, c, S, S] → [N, channels, S, S]: grey repeated to every channel (RGB), RGB averaged to grey, anything
    else refused."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.repeat(1, channels, 1, 1)
    if c == 3 and channels == 1:
        return x.mean(1, keepdim=True)
    raise ValueError(f"{source}: cannot turn {c}-channel images into {channels}-channel probes")


class RealImageProbes(FixedProbes):
    """Q images drawn without replacement from `images` (uint8 [N, H, W] or [N, H, W, 3]), converted like the CNN
    zoo's inputs; the probes [Q, C, S, S] and the drawn indices [Q] are buffers, so checkpoints record both."""

    def __init__(self, images: np.ndarray, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator,
                 source: str = "images") -> None:
        channels, size = image_channels(input_shape), input_shape[1]
        if not 1 <= n_probes <= len(images):
            raise ValueError(f"{source}: n_probes (={n_probes}) must be between 1 and the {len(images)} images")
        indices = torch.randperm(len(images), generator=generator)[:n_probes]  # [Q]
        x = images_to_inputs(images[indices.numpy()])  # [Q, c, S', S'] in [-1, 1]; 28×28 padded to 32×32
        if x.shape[-2:] != (size, size):
            raise ValueError(f"{source}: its {images.shape[1]}×{images.shape[2]} images become {x.shape[-2]}×"
                             f"{x.shape[-1]} CNN inputs, not the {size}×{size} of input_shape {tuple(input_shape)}")
        super().__init__(match_channels(x, channels, source))
        self.register_buffer("indices", indices)


@dataclass(frozen=True)
class RealImagesConfig:
    """Fixed real images of a named data set's split (not the zoo's own), drawn at random by the build generator."""

    kind: ClassVar[str] = "real-images"
    inputs: ClassVar[str] = "images"  # the zoos it fits: models taking images
    dataset: DatasetName = "mnist"  # a name from core.data.DATASETS; grey images repeat to RGB, RGB averages to grey
    split: Split = "test"  # "test" keeps the probes out of any zoo trained on this data set's train split

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"RealImagesConfig.dataset {self.dataset!r} is not one of {list(DATASETS)}")
        if self.split not in ("train", "test"):
            raise ValueError(f"RealImagesConfig.split {self.split!r} is not one of ['train', 'test']")

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        image_channels(input_shape)  # refuse a non-image shape before loading anything
        images = load_dataset(self.dataset).images(self.split)
        return RealImageProbes(images, n_probes, input_shape, generator, source=repr(self))
