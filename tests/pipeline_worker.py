"""Run by tests/test_pipeline.py in a process of its own with 8 host CPU devices: the
pipelined stack against the plain one, on meshes of 1-8 devices. Prints one JSON line per
case: the largest differences in outputs, final carries and gradients, and the scales."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import json  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rnn_jax import cells, layers, pipeline  # noqa: E402

B, T, D, H = 4, 7, 5, 8


def gnmt_like(cell=cells.lstm, bidirectional=True, reverse=False, num_layers=8):
  bottom = (layers.bidirectional(cell(H)) if bidirectional
            else layers.rnn(cell(H), reverse=reverse))
  return [bottom] + [layers.rnn(cell(H), reverse=reverse) for _ in range(num_layers - 1)]


def max_diff(a, b):
  return max(float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def scale(a):
  return max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(a))


def compare(name, stack_layers, mesh, *, data_axis=None, lengths=None, initial=False,
            per_sequence=False, rate=0.3, residual_from=2, timestamps=None):
  kw = dict(residual_from=residual_from, dropout_rate=rate, dropout_per_sequence=per_sequence)
  plain = layers.stack(stack_layers, **kw)
  piped = pipeline.stack(stack_layers, mesh=mesh, data_axis=data_axis, **kw)
  params = plain.init(jax.random.key(0), D)
  xs = jax.random.normal(jax.random.key(1), (B, T, D))
  key = jax.random.key(2)
  carry = None
  if initial:
    _, carry = plain.apply(params, jax.random.normal(jax.random.key(3), (B, 3, D)))

  def loss(layer, params, xs, carry):
    ys, finals = layer.apply(params, xs, seq_lengths=lengths, initial_carry=carry,
                             timestamps=timestamps, training=rate > 0, key=key)
    # Weighted sums, so that every output and carry entry has its own cotangent.
    w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))
    total = jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(finals))
    return total, (ys, finals)

  grad = lambda layer: jax.jit(jax.value_and_grad(
      lambda p, x, c: loss(layer, p, x, c), argnums=(0, 1, 2), has_aux=True))
  (_, (ys1, f1)), g1 = grad(plain)(params, xs, carry)
  (_, (ys2, f2)), g2 = grad(piped)(params, xs, carry)
  print(json.dumps({
      "case": name, "devices": int(mesh.size),
      "ys": max_diff(ys1, ys2), "finals": max_diff(f1, f2), "grads": max_diff(g1, g2),
      "ys_scale": scale(ys1), "grads_scale": scale(g1),
      "zero_past_length": bool(lengths is None or all(
          not np.asarray(ys2)[b, int(n):].any() for b, n in enumerate(lengths))),
  }), flush=True)


def compare_gnmt(pipeline_devices, num_devices, architecture="gnmt"):
  """A GNMT training loss and its gradients on a fixed batch, with and without the
  layers pipelined (the same params, batch and dropout key)."""
  import dataclasses
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from fixtures import gnmt_config, gnmt_fixed_batch
  from experiments.gnmt import model as model_lib, train as train_lib
  V = 23
  base = gnmt_config(hidden_size=8, vocab_size=V, dropout=0.2, num_layers=4,
                     attention_architecture=architecture)
  piped = dataclasses.replace(base, pipeline_devices=pipeline_devices, num_devices=num_devices)
  batch = gnmt_fixed_batch(V)
  results = []
  for config in (base, piped):
    model = model_lib.GNMT(config, V)
    params = model.init(jax.random.key(0))
    loss_fn = train_lib.make_loss_fn(config, model)
    f = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, {}, batch, jax.random.key(3))[0]))
    results.append(f(params))
  (l1, g1), (l2, g2) = results
  print(json.dumps({
      "case": f"gnmt_model_{architecture}_{num_devices // pipeline_devices}x{pipeline_devices}",
      "devices": num_devices, "loss": float(l1), "loss_diff": abs(float(l1) - float(l2)),
      "grads": max_diff(g1, g2), "grads_scale": scale(g1)}), flush=True)


def main():
  lengths = jnp.array([7, 3, 0, 5])
  devices = jax.devices()
  # 8 devices here; 2 and 4 below (each case's layer count is the fewest that shows it:
  # every compile here costs seconds per layer).
  compare("gnmt", gnmt_like(), jax.make_mesh((8,), ("layers",), devices=devices), lengths=lengths)
  mesh2 = jax.make_mesh((2,), ("layers",), devices=devices[:2])
  mesh4 = jax.make_mesh((4,), ("layers",), devices=devices[:4])
  compare("reverse", gnmt_like(bidirectional=False, reverse=True, num_layers=4), mesh4,
          lengths=lengths)
  compare("uni_bottom_no_lengths", gnmt_like(bidirectional=False, num_layers=4), mesh4,
          residual_from=1)
  compare("gru_per_sequence_initial", gnmt_like(cells.gru, num_layers=5), mesh2,
          lengths=lengths, per_sequence=True, initial=True)
  compare("uneven_5_layers_on_4", gnmt_like(num_layers=5), mesh4, lengths=lengths)
  mesh2d = jax.make_mesh((2, 4), ("data", "layers"), devices=devices[:8])
  compare("data_x_layers", gnmt_like(num_layers=6), mesh2d, data_axis="data", lengths=lengths)
  times = jnp.cumsum(jax.random.uniform(jax.random.key(4), (B, T)) + 0.5, axis=1)
  phased = lambda h: cells.phased_lstm(h)
  compare_gnmt(2, 2)
  compare_gnmt(4, 8, "gnmt_v2")
  compare("phased_lstm_timestamps", gnmt_like(phased, bidirectional=False, num_layers=4),
          mesh2, lengths=lengths, timestamps=times, rate=0.2)


if __name__ == "__main__":
  sys.exit(main())
