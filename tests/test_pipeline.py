"""`rnn_jax.pipeline`: the pipelined stack equals the plain stack (outputs, final carries,
gradients) on 2, 4 and 8 host CPU devices, and rejects what it cannot pipeline.

The comparisons run in one process of their own with 8 host devices
(`tests/pipeline_worker.py`): this process's jax has already started with one."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from rnn_jax import cells, layers, pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CASES = [("gnmt", 8), ("reverse", 4), ("uni_bottom_no_lengths", 4),
         ("gru_per_sequence_initial", 2), ("uneven_5_layers_on_4", 4), ("data_x_layers", 8),
         ("phased_lstm_timestamps", 2)]


@pytest.fixture(scope="module")
def worker_results():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, os.path.join(HERE, "pipeline_worker.py")],
                       capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
  return {(r["case"], r["devices"]): r for r in rows}


@pytest.mark.parametrize("case,devices", CASES)
def test_pipelined_stack_equals_plain_stack(worker_results, case, devices):
  """8 layers with a bi-directional bottom and residuals from the third layer (GNMT's
  encoder) on 8 devices, ragged lengths (one of them 0), dropout with the same keys; and
  the variants named by the case, with 4-6 layers: reverse layers, a uni-directional
  bottom, GRU cells with per-sequence masks and initial carries, uneven groups, a data x
  layers mesh, Phased LSTM reading timestamps."""
  r = worker_results[(case, devices)]
  assert r["ys"] <= 1e-5 * max(1.0, r["ys_scale"]), r
  assert r["finals"] <= 1e-5, r
  assert r["grads"] <= 1e-5 * max(1.0, r["grads_scale"]), r
  assert r["zero_past_length"], r
  assert r["grads_scale"] > 1.0  # the loss reaches every parameter


def test_placement_contiguous_larger_groups_last():
  assert pipeline.placement(8, 1) == (8,)
  assert pipeline.placement(8, 2) == (4, 4)
  assert pipeline.placement(8, 8) == (1,) * 8
  assert pipeline.placement(7, 2) == (3, 4)
  assert pipeline.placement(5, 4) == (1, 1, 1, 2)
  assert pipeline.placement(7, 8) == (0, 1, 1, 1, 1, 1, 1, 1)


def _one_device_mesh():
  return jax.make_mesh((1,), ("layers",), devices=jax.devices()[:1])


def test_one_device_equals_plain_stack_in_process():
  """The same schedule with one stage: the wavefront's step-by-step loop against the
  plain stack's fused unroll, here without a subprocess."""
  stack_layers = [layers.bidirectional(cells.lstm(6))] + [layers.rnn(cells.lstm(6))
                                                          for _ in range(3)]
  plain = layers.stack(stack_layers, residual_from=2, dropout_rate=0.25)
  piped = pipeline.stack(stack_layers, mesh=_one_device_mesh(), residual_from=2,
                         dropout_rate=0.25)
  params = plain.init(jax.random.key(0), 3)
  xs = jax.random.normal(jax.random.key(1), (3, 5, 3))
  lengths = jnp.array([5, 2, 4])
  kw = dict(seq_lengths=lengths, training=True, key=jax.random.key(7))
  ys1, f1 = plain.apply(params, xs, **kw)
  ys2, f2 = piped.apply(params, xs, **kw)
  assert jnp.allclose(ys1, ys2, atol=1e-6)
  for a, b in zip(jax.tree.leaves(f1), jax.tree.leaves(f2)):
    assert jnp.allclose(a, b, atol=1e-6)
  assert piped.init is plain.init or jax.tree.all(jax.tree.map(
      jnp.array_equal, piped.init(jax.random.key(0), 3), params))


def test_rejects_what_it_cannot_pipeline():
  mesh = _one_device_mesh()
  lstm = cells.lstm(4)
  with pytest.raises(ValueError, match="all run forward or all in reverse"):
    pipeline.stack([layers.rnn(lstm), layers.rnn(lstm, reverse=True)], mesh=mesh)
  with pytest.raises(ValueError, match="bottom only"):
    pipeline.stack([layers.rnn(lstm), layers.bidirectional(lstm)], mesh=mesh)
  inner = layers.stack([layers.rnn(lstm)])
  with pytest.raises(ValueError, match="cannot be pipelined"):
    pipeline.stack([layers.rnn(lstm), inner], mesh=mesh)
  with pytest.raises(ValueError, match="not an axis of the mesh"):
    pipeline.stack([layers.rnn(lstm)], mesh=mesh, axis="stages")
  with pytest.raises(ValueError, match="hidden sizes differ"):
    pipeline.wavefront([cells.lstm(4), cells.lstm(5)], [None, None], jnp.zeros((2, 3, 4)),
                       mesh=mesh)
  with pytest.raises(ValueError, match="sizes"):
    pipeline.wavefront([lstm, lstm], [None, None], jnp.zeros((2, 3, 4)), mesh=mesh,
                       sizes=(1,))
  three = jax.sharding.AbstractMesh((3,), ("layers",))  # the check needs no devices
  with pytest.raises(ValueError, match="only come before"):
    pipeline.wavefront([lstm, lstm], [None, None], jnp.zeros((2, 3, 4)), mesh=three,
                       sizes=(1, 0, 1))


@pytest.mark.parametrize("case,devices", [("gnmt_model_gnmt_1x2", 2),
                                          ("gnmt_model_gnmt_v2_2x4", 8)])
def test_gnmt_pipelined_same_loss_and_gradients(worker_results, case, devices):
  """GNMT's training loss on a fixed batch (4 + 4 layers), with dropout, with
  `--pipeline_devices` (2 devices; and 4 per model copy times 2 copies splitting the batch,
  under gnmt_v2's attention) against the same model on one device."""
  r = worker_results[(case, devices)]
  assert r["loss_diff"] <= 1e-5 * r["loss"], r
  assert r["grads"] <= 1e-5 * max(1.0, r["grads_scale"]) and r["grads_scale"] > 0, r
