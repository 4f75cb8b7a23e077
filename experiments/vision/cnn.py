"""The image encoder the vision-language experiments share: a small CNN in Flax (linen).

    encoder = cnn.ConvEncoder(features=(32, 64, 128))
    variables = encoder.init(key, images)                 # images [B, H, W, 3] uint8
    grid = encoder.apply(variables, images)               # [B, h, w, D], D = features[-1]
    annotations = cnn.regions(grid)                       # [B, R, D], R = h * w, row-major

Each stage is a 3x3 convolution and a ReLU, then 2x2 max pooling after every stage
but the last; the first convolution strides by `first_stride` (a cheap stem for CPU
runs), and the last may be dilated (`last_dilation`: a 3x3 kernel over every other cell,
which widens the last stage's receptive field at no extra cost). A 64x64 image through
the default three stages with `first_stride=2` gives (64 / 2 / 2 / 2 =) an 8x8 grid of
128-wide annotation vectors: the regions Show, Attend and Tell attends over and whose
mean Show and Tell embeds.

Pixels are scaled to [-1, 1] inside. The encoder has no batch statistics (no batch norm),
so training and inference run the same function and params are a plain pytree.
A pretrained network (VGG, ResNet) enters instead as precomputed features: one `.npy`
per image, `[R, D]` or `[D]` (`experiments.captioning.corpora.feature_folder`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvEncoder(nn.Module):
  """`[B, H, W, 3]` images (uint8 or floats in [0, 255]) -> `[B, h, w, features[-1]]`."""
  features: Sequence[int] = (32, 64, 128)
  first_stride: int = 2
  last_dilation: int = 1

  @nn.compact
  def __call__(self, images):
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"ConvEncoder: expected images [B, H, W, 3], got {images.shape}")
    x = images.astype(jnp.float32) / 127.5 - 1.0  # [B, H, W, 3] in [-1, 1]
    for i, width in enumerate(self.features):
      stride = self.first_stride if i == 0 else 1
      dilation = self.last_dilation if i == len(self.features) - 1 else 1
      x = nn.relu(nn.Conv(width, (3, 3), strides=(stride, stride), padding="SAME",
                          kernel_dilation=(dilation, dilation), name=f"conv{i}")(x))
      if i < len(self.features) - 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))  # [B, h / 2, w / 2, width]
    return x  # [B, h, w, D]


def regions(grid: jax.Array) -> jax.Array:
  """`[B, h, w, D]` -> `[B, h * w, D]`: the annotation vectors, row-major over the grid."""
  B, h, w, D = grid.shape
  return grid.reshape(B, h * w, D)


def grid_shape(encoder: ConvEncoder, image_size: int) -> tuple[int, int]:
  """The `(h, w)` grid `encoder` gives for square `image_size` images."""
  out = jax.eval_shape(lambda x: encoder.init_with_output(jax.random.key(0), x)[0],
                       jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.uint8))
  return out.shape[1], out.shape[2]
