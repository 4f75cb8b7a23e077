"""The shared image encoder (`experiments.vision.cnn`) against the network written out in
numpy: 3x3 convolutions as sums of shifted images (strided, dilated), ReLU, 2x2 max pooling."""

import jax
import numpy as np
import pytest

from experiments.vision import cnn


def _conv3x3(x, kernel, bias, stride, dilation):
  """`x [H, W, C]`, `kernel [3, 3, C, F]`, SAME padding (XLA's: the extra row and column
  go after) -> `[ceil(H / s), ceil(W / s), F]`, each output a sum over the nine taps."""
  H, W, _ = x.shape
  span = 2 * dilation  # the kernel covers (2 d + 1) cells
  Ho, Wo = -(-H // stride), -(-W // stride)
  pad_h = max((Ho - 1) * stride + span + 1 - H, 0)
  pad_w = max((Wo - 1) * stride + span + 1 - W, 0)
  xp = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  out = np.zeros((Ho, Wo, kernel.shape[-1]))
  for i in range(3):
    for j in range(3):
      patch = xp[i * dilation:, j * dilation:][:(Ho - 1) * stride + 1:stride,
                                               :(Wo - 1) * stride + 1:stride]
      out += patch @ kernel[i, j]
  return out + bias


def _reference(params, image, features, first_stride, last_dilation):
  x = image.astype(np.float64) / 127.5 - 1.0
  for i in range(len(features)):
    p = params[f"conv{i}"]
    last = i == len(features) - 1
    x = np.maximum(_conv3x3(x, np.asarray(p["kernel"], np.float64), np.asarray(p["bias"]),
                            first_stride if i == 0 else 1, last_dilation if last else 1), 0)
    if not last:
      h, w, c = x.shape
      x = x[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
  return x


@pytest.mark.parametrize("first_stride,last_dilation", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_encoder_equals_written_out_network(first_stride, last_dilation):
  features = (4, 6, 5)
  encoder = cnn.ConvEncoder(features, first_stride, last_dilation)
  images = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3)).astype(np.uint8)
  variables = encoder.init(jax.random.key(1), images)
  # Non-zero biases, so padding and the bias are both exercised.
  params = jax.tree.map(lambda a: a + 0.1, variables["params"])
  grid = np.asarray(encoder.apply({"params": params}, images))
  assert grid.shape[1:3] == cnn.grid_shape(encoder, 24)
  for b in range(2):
    want = _reference(params, images[b], features, first_stride, last_dilation)
    np.testing.assert_allclose(grid[b], want, rtol=1e-4, atol=1e-4)


def test_dilation_widens_the_receptive_field():
  """A pixel moves the last stage's features 3 grid cells away only with dilation 2
  (stride-1 stem, two poolings: cells are 4 pixels; receptive field 18 against 26 px).
  Pixel 30 reaches cells 6-8 after the second pooling, then the last convolution's taps
  at +-1 cell (5-9) or +-2 cells (4-10)."""
  images = np.full((1, 64, 64, 3), 128, np.uint8)  # mid-grey: every ReLU is active
  moved = images.copy()
  moved[0, 30, 30] = 255  # grid cell (7, 7)
  for dilation, reaches in [(1, False), (2, True)]:
    encoder = cnn.ConvEncoder((4, 4, 4), 1, dilation)
    variables = encoder.init(jax.random.key(0), images)
    variables = jax.tree.map(lambda a: np.abs(a) + 0.01, variables)  # every path positive
    diff = np.abs(np.asarray(encoder.apply(variables, moved) - encoder.apply(variables, images)))
    assert diff[0, 7, 7].max() > 0
    assert (diff[0, 7, 10].max() > 0) == reaches  # 3 cells to the right
    assert diff[0, 7, 11].max() == 0
