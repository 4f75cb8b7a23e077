"""rnn_jax.seq2seq: the decoder contract and decoding on it, against independent references
(exhaustive enumeration of the penalised score, Python loops over `step`)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import cells, seq2seq
from rnn_jax.seq2seq import attention

EOS, BOS = 0, 1


def toy_decoder(V=5, H=6, M=4, attn=True, sharpness=3.0):
  """An LSTM decoder reading Luong-general attention over a memory `[B, S, M]` (or, with
  `attn=False`, a plain LSTM language model ignoring its memory): the contract's smallest
  real user."""
  cell = cells.lstm(H)

  def init(key):
    k = jax.random.split(key, 5)
    return {"embed": jax.random.normal(k[0], (V, H)),
            "cell": cell.init(k[1], H + (M if attn else 0)),
            "attention": attention.init(k[2], "luong_general", H, M, H),
            "w_out": sharpness * jax.random.normal(k[3], (H + (M if attn else 0), V)) / np.sqrt(H),
            "b_out": jax.random.normal(k[4], (V,))}

  def init_state(params, memory):
    B = memory.values.shape[0]
    return cell.initial_carry((B,)), jnp.zeros((B, M))

  def step(params, memory, state, tokens):
    carry, context = state
    x = params["embed"][tokens]
    if attn:
      x = jnp.concatenate([x, context], -1)
    carry, h = cell.step(params["cell"], carry, x)
    if not attn:
      return (carry, context), h @ params["w_out"] + params["b_out"], None
    context, weights = attention.attend(params["attention"], "luong_general", memory, h)
    logits = jnp.concatenate([h, context], -1) @ params["w_out"] + params["b_out"]
    return (carry, context), logits, weights

  return seq2seq.Decoder(init_state, step, V, readout=lambda state: state[0].h), init


def _memory(B=2, S=3, M=4, seed=0):
  rng = np.random.default_rng(seed)
  values = jnp.asarray(rng.normal(size=(B, S, M)), jnp.float32)
  mask = jnp.asarray(np.arange(S)[None, :] < np.array([S, S - 1])[:B, None])
  return attention.prepare({}, "luong_dot", values, mask)


def _score_by_enumeration(decoder, params, memory, b, T, alpha, beta, n=1):
  """The best penalised score of row b over every output (EOS-terminated, or cut at T),
  each scored by running `step` along it: log P / lp(|Y|) + cp(coverage); with n > 1
  the n best (score, output) pairs, best first."""
  V = decoder.vocab_size
  mask = np.asarray(memory.mask[b])
  row = jax.tree_util.tree_map(lambda a: a[b:b + 1], memory)
  step = jax.jit(lambda s, t: decoder.step(params, row, s, t))
  scored = []
  outputs = [seq for n in range(1, T + 1) for seq in itertools.product(range(V), repeat=n)
             if all(t != EOS for t in seq[:-1]) and (seq[-1] == EOS or n == T)]
  for seq in outputs:
    state = decoder.init_state(params, row)
    token, logp, coverage = BOS, 0.0, np.zeros(mask.shape)
    for t in seq:
      state, logits, weights = step(state, jnp.array([token]))
      logp += float(jax.nn.log_softmax(logits)[0, t])
      coverage += np.asarray(weights[0])
      token = t
    lp = ((5.0 + len(seq)) / 6.0) ** alpha
    cp = beta * np.sum(np.where(mask, np.log(np.clip(coverage, 1e-20, 1.0)), 0.0))
    scored.append((logp / lp + cp, seq))
  scored.sort(key=lambda x: -x[0])
  return scored[0] if n == 1 else scored[:n]


@pytest.mark.parametrize("alpha,beta", [(0.0, 0.0), (0.6, 0.2), (1.0, 0.0)])
def test_a_wide_beam_finds_the_enumerated_best(alpha, beta):
  V, T = 5, 4
  decoder, init = toy_decoder(V)
  params = init(jax.random.key(3))
  memory = _memory()
  start = jnp.full((2,), BOS)
  # Wide enough to hold every prefix: (V - 1)^3 live ones plus the finished.
  wide = seq2seq.beam_search(decoder, params, memory, start, beam_size=V ** 3, max_len=T,
                             eos=EOS, pad=-1, alpha=alpha, beta=beta, source_mask=memory.mask)
  greedy = seq2seq.greedy(decoder, params, memory, start, max_len=T, eos=EOS, pad=-1)
  enumerated = [_score_by_enumeration(decoder, params, memory, b, T, alpha, beta, n=3)
                for b in range(2)]
  for b in range(2):
    score, seq = enumerated[b][0]
    n = int(wide.lengths[b])
    got = list(np.asarray(wide.tokens[b, :n])) + ([EOS] if n < T else [])
    assert tuple(got) == seq
    assert float(wide.scores[b]) == pytest.approx(score, abs=1e-4)
    if alpha == beta == 0:  # the score is the log-prob: never below greedy's
      assert float(wide.scores[b]) >= float(greedy.scores[b]) - 1e-5
  # n-best: the 3 best of the enumeration, best first; the first is the 1-best.
  three = seq2seq.beam_search(decoder, params, memory, start, beam_size=V ** 3, max_len=T,
                              eos=EOS, pad=-1, alpha=alpha, beta=beta, source_mask=memory.mask,
                              n_best=3)
  assert three.tokens.shape == (2, 3, T) and three.scores.shape == (2, 3)
  np.testing.assert_array_equal(three.tokens[:, 0], wide.tokens)
  for b in range(2):
    for (score, seq), tokens, n, got in zip(
        enumerated[b],
        np.asarray(three.tokens[b]), np.asarray(three.lengths[b]), np.asarray(three.scores[b])):
      assert tuple(list(tokens[:n]) + ([EOS] if n < T else [])) == seq
      assert float(got) == pytest.approx(score, abs=1e-4)


def test_beam_of_one_is_greedy_and_greedy_is_the_python_loop():
  decoder, init = toy_decoder(7)
  params = init(jax.random.key(1))
  memory = _memory(seed=1)
  start = jnp.full((2,), BOS)
  greedy = jax.jit(lambda p: seq2seq.greedy(decoder, p, memory, start, max_len=6, eos=EOS))(params)
  beam = seq2seq.beam_search(decoder, params, memory, start, beam_size=1, max_len=6, eos=EOS,
                             alpha=0.6, beta=0.2, source_mask=memory.mask)
  np.testing.assert_array_equal(beam.tokens, greedy.tokens)
  np.testing.assert_array_equal(beam.lengths, greedy.lengths)
  # The Python loop: argmax of each step, fed back, until EOS.
  for b in range(2):
    row = jax.tree_util.tree_map(lambda a: a[b:b + 1], memory)
    step = jax.jit(lambda s, t: decoder.step(params, row, s, t))
    state, token, out, logp = decoder.init_state(params, row), BOS, [], 0.0
    for _ in range(6):
      state, logits, _ = step(state, jnp.array([token]))
      lp = jax.nn.log_softmax(logits)[0]
      token = int(jnp.argmax(lp))
      logp += float(lp[token])
      if token == EOS:
        break
      out.append(token)
    n = int(greedy.lengths[b])
    assert list(np.asarray(greedy.tokens[b, :n])) == out
    assert float(greedy.scores[b]) == pytest.approx(logp, abs=1e-5)


def test_a_decoder_without_attention_decodes():
  """The plain LSTM language-model decoder of the README (no memory, attention None)."""
  decoder, init = toy_decoder(6, attn=False)
  params = init(jax.random.key(2))
  memory = _memory()
  start = jnp.full((2,), BOS)
  beam = seq2seq.beam_search(decoder, params, memory, start, beam_size=3, max_len=5, eos=EOS,
                             alpha=0.6)
  greedy = seq2seq.greedy(decoder, params, memory, start, max_len=5, eos=EOS)
  assert beam.weights is None and greedy.weights is None
  assert beam.tokens.shape == greedy.tokens.shape == (2, 5)
  with pytest.raises(ValueError, match="coverage"):
    seq2seq.beam_search(decoder, params, memory, start, beam_size=3, max_len=5, eos=EOS,
                        beta=0.2)


def test_sampling_scan_gives_the_log_probs_of_its_tokens_with_gradients():
  decoder, init = toy_decoder(6)
  params = init(jax.random.key(4))
  memory = _memory(seed=4)
  start = jnp.full((2,), BOS)
  key = jax.random.key(9)
  out = seq2seq.sample(decoder, params, memory, start, key, max_len=5, eos=EOS, pad=-1,
                       temperature=0.7, top_k=4)
  # Teacher-forced along the sampled tokens: the same log-probs, masked after EOS.
  for b in range(2):
    row = jax.tree_util.tree_map(lambda a: a[b:b + 1], memory)
    step = jax.jit(lambda s, t: decoder.step(params, row, s, t))
    state, token = decoder.init_state(params, row), BOS
    n = int(np.asarray(out.mask[b]).sum())
    for t in range(n):
      state, logits, _ = step(state, jnp.array([token]))
      token = int(out.tokens[b, t]) if t < int(out.lengths[b]) else EOS
      assert float(out.log_probs[b, t]) == pytest.approx(
          float(jax.nn.log_softmax(logits)[0, token]), abs=1e-5)
    assert not np.asarray(out.mask[b, n:]).any() and np.all(np.asarray(out.log_probs[b, n:]) == 0)
  # Fixed length: it differentiates (REINFORCE's gradient), and top_k=1 is greedy.
  grad = jax.grad(lambda p: seq2seq.sample(decoder, p, memory, start, key, max_len=5, eos=EOS,
                                           temperature=0.7).log_probs.sum())(params)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grad))
  assert float(jnp.abs(grad["w_out"]).sum()) > 0
  top1 = seq2seq.sample(decoder, params, memory, start, key, max_len=5, eos=EOS, top_k=1)
  greedy = seq2seq.greedy(decoder, params, memory, start, max_len=5, eos=EOS)
  np.testing.assert_array_equal(top1.tokens, greedy.tokens)
  np.testing.assert_allclose(top1.log_probs.sum(1), greedy.scores, rtol=1e-5)


def test_proportional_limits():
  np.testing.assert_array_equal(seq2seq.proportional_limits([0, 3, 5, 40], 2.0, 50), [1, 6, 10, 50])
  np.testing.assert_array_equal(seq2seq.proportional_limits([2, 3], 1.5, 9), [3, 4])  # halves to even
  np.testing.assert_array_equal(seq2seq.proportional_limits([2, 7], 0.0, 9), [9, 9])


# -- training-time feeding: teacher forcing, scheduled sampling -------------------------------


def _targets(B, U, V, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(1, V, (B, U)), jnp.int32)


def test_scheduled_sampling_with_epsilon_one_is_teacher_forcing():
  decoder, init = toy_decoder(6)
  params = init(jax.random.key(5))
  memory = _memory(seed=5)
  start, targets = jnp.full((2,), BOS), _targets(2, 5, 6)
  loss = lambda logits: -jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(targets, 6))

  def forced(p):
    return loss(seq2seq.teacher_forcing(decoder, p, memory, start, targets)[0])

  def scheduled(p):
    logits, _, gold = seq2seq.scheduled_sampling(decoder, p, memory, start, targets,
                                                 jax.random.key(0), 1.0)
    return loss(logits), gold

  (a, ga), ((b, gold), gb) = (jax.value_and_grad(forced)(params),
                              jax.value_and_grad(scheduled, has_aux=True)(params))
  assert bool(gold.all())
  np.testing.assert_array_equal(a, b)
  for x, y in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
    np.testing.assert_array_equal(x, y)
  # And teacher forcing is the Python loop over `step` with the gold tokens.
  logits, weights = seq2seq.teacher_forcing(decoder, params, memory, start, targets)
  state, token = decoder.init_state(params, memory), start
  for t in range(5):
    state, want, w = decoder.step(params, memory, state, token)
    np.testing.assert_allclose(logits[:, t], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights[:, t], w, rtol=1e-5, atol=1e-6)
    token = targets[:, t]


def test_scheduled_sampling_with_epsilon_zero_feeds_what_sampling_writes():
  decoder, init = toy_decoder(6, sharpness=1.0)
  params = init(jax.random.key(6))
  memory = _memory(seed=6)
  start, key = jnp.full((2,), BOS), jax.random.key(11)
  sampled = seq2seq.sample(decoder, params, memory, start, key, max_len=6, eos=EOS,
                           temperature=0.8)
  logits, _, gold = seq2seq.scheduled_sampling(decoder, params, memory, start,
                                               _targets(2, 6, 6), key, 0.0, temperature=0.8)
  assert not bool(gold[:, 1:].any())
  # Teacher-forced along the sampled tokens (EOS where sampling wrote it): the same logits
  # for as long as the sample runs.
  written = jnp.where(sampled.mask & (jnp.arange(6)[None] == sampled.lengths[:, None]), EOS,
                      sampled.tokens)
  want, _ = seq2seq.teacher_forcing(decoder, params, memory, start, written)
  for b in range(2):
    n = int(sampled.mask[b].sum())
    np.testing.assert_allclose(logits[b, :n], want[b, :n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("feed", ["sample", "argmax", "uniform"])
def test_scheduled_sampling_feeds_gold_with_probability_epsilon(feed):
  decoder, init = toy_decoder(6)
  params = init(jax.random.key(7))
  B = 3000
  memory = jax.tree_util.tree_map(lambda a: jnp.repeat(a, B // 2, axis=0), _memory(seed=7))
  targets = _targets(B, 4, 6)
  _, _, gold = seq2seq.scheduled_sampling(decoder, params, memory, jnp.full((B,), BOS), targets,
                                          jax.random.key(1), 0.3, feed=feed)
  assert bool(gold[:, 0].all())
  assert float(gold[:, 1:].mean()) == pytest.approx(0.3, abs=0.02)
  with pytest.raises(ValueError, match="feed"):
    seq2seq.scheduled_sampling(decoder, params, memory, jnp.full((B,), BOS), targets,
                               jax.random.key(1), 0.3, feed="gold")


def test_schedules_are_their_formulas():
  from rnn_jax.seq2seq import forcing
  for i in (0, 10, 5000, 20000):
    assert float(forcing.linear_schedule(i, k=1.0, c=1e-4, minimum=0.1)) == pytest.approx(
        max(0.1, 1.0 - 1e-4 * i))
    k = float(np.float32(0.9995))  # the schedule computes in float32
    assert float(forcing.exponential_schedule(i, k=0.9995)) == pytest.approx(k ** i, rel=1e-5)
    assert float(forcing.inverse_sigmoid_schedule(i, k=500.0)) == pytest.approx(
        500.0 / (500.0 + np.exp(i / 500.0)), rel=1e-5)
  with pytest.raises(ValueError):
    forcing.exponential_schedule(3, k=1.5)
  with pytest.raises(ValueError):
    forcing.inverse_sigmoid_schedule(3, k=0.5)


# -- sequence-level losses: REINFORCE, self-critical ------------------------------------------


def test_reinforce_loss_is_its_formula():
  from rnn_jax.seq2seq import sequence_losses
  rng = np.random.default_rng(0)
  log_probs = jnp.asarray(-rng.random((3, 4)), jnp.float32)
  mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
  rewards, baseline = jnp.array([1.0, 0.2, -0.5]), jnp.array([0.5, 0.5, 0.0])
  want = -np.mean([(rewards[b] - baseline[b]) * np.sum(np.where(mask[b], log_probs[b], 0))
                   for b in range(3)])
  assert float(sequence_losses.reinforce_loss(log_probs, mask, rewards, baseline)) == pytest.approx(want)
  grad = jax.grad(sequence_losses.reinforce_loss)(log_probs, mask, rewards, baseline)
  np.testing.assert_allclose(grad, -(rewards - baseline)[:, None] * mask / 3, rtol=1e-6)
  # No gradient reaches the rewards or the baseline; a per-token baseline weighs each token.
  assert float(jnp.abs(jax.grad(sequence_losses.reinforce_loss, argnums=(2,))(
      log_probs, mask, rewards, baseline)[0]).sum()) == 0
  per_token = jnp.asarray(rng.random((3, 4)), jnp.float32)
  grad = jax.grad(sequence_losses.reinforce_loss)(log_probs, mask, rewards, per_token)
  np.testing.assert_allclose(grad, -(rewards[:, None] - per_token) * mask / 3, rtol=1e-6)


def test_reinforce_raises_the_probability_of_the_rewarded_sequence():
  """Reward 1 for one fixed output, 0 otherwise: a few REINFORCE steps (moving-average
  baseline) raise its log-probability, measured by teacher forcing."""
  import optax
  from rnn_jax.seq2seq import sequence_losses
  V, T, B = 4, 3, 64
  decoder, init = toy_decoder(V, sharpness=0.5)
  params = init(jax.random.key(8))
  memory = jax.tree_util.tree_map(lambda a: jnp.repeat(a[:1], B, axis=0), _memory(seed=8))
  start = jnp.full((B,), BOS)
  best = jnp.array([2, 3, EOS])  # the rewarded output

  def log_p_best(p):
    logits, _ = seq2seq.teacher_forcing(decoder, p, memory, start, jnp.tile(best, (B, 1)))
    return jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits[0]), best[:, None], 1))

  def loss(p, key, baseline):
    out = seq2seq.sample(decoder, p, memory, start, key, max_len=T, eos=EOS, pad=EOS)
    reward = jnp.all(jnp.where(out.mask, out.tokens, EOS) == jnp.where(out.mask, best, EOS), 1)
    reward = (reward & (out.lengths == 2)).astype(jnp.float32)
    return sequence_losses.reinforce_loss(out.log_probs, out.mask, reward, baseline), reward.mean()

  opt = optax.adam(0.05)
  state = opt.init(params)
  step = jax.jit(lambda p, s, k, b: _apply(opt, jax.value_and_grad(loss, has_aux=True), p, s, k, b))
  before, baseline = float(log_p_best(params)), 0.0
  for i in range(30):
    params, state, mean_reward = step(params, state, jax.random.key(i), baseline)
    baseline = 0.9 * baseline + 0.1 * float(mean_reward)
  after = float(log_p_best(params))
  assert after > before + 1.0, (before, after)  # measured: -5.65 -> -1.08


def _apply(opt, value_and_grad, params, state, key, baseline):
  import optax
  (_, reward), grads = value_and_grad(params, key, baseline)
  updates, state = opt.update(grads, state, params)
  return optax.apply_updates(params, updates), state, reward


def test_self_critical_gradient_is_zero_when_samples_earn_the_greedy_reward():
  from rnn_jax.seq2seq import sequence_losses
  decoder, init = toy_decoder(6)
  params = init(jax.random.key(9))
  memory = _memory(seed=9)
  start = jnp.full((2,), BOS)

  def loss(p, rewards, greedy_rewards):
    out = seq2seq.sample(decoder, p, memory, start, jax.random.key(3), max_len=5, eos=EOS)
    return sequence_losses.self_critical_loss(out.log_probs, out.mask, rewards, greedy_rewards)

  same = jax.grad(loss)(params, jnp.array([0.7, 0.3]), jnp.array([0.7, 0.3]))
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree_util.tree_leaves(same))
  better = jax.grad(loss)(params, jnp.array([0.9, 0.3]), jnp.array([0.7, 0.3]))
  assert float(jnp.abs(better["w_out"]).sum()) > 0


def test_ensembles():
  """An ensemble of one model decodes as the model; of two copies, as one copy (to the bit);
  of two different models, by the mean of their log-probs (the Python loop)."""
  decoder, init = toy_decoder(6)
  p1, p2 = init(jax.random.key(10)), init(jax.random.key(11))
  memory = _memory(seed=10)
  start = jnp.full((2,), BOS)
  kw = dict(beam_size=3, max_len=6, eos=EOS, alpha=0.6, beta=0.2, source_mask=memory.mask)
  alone = seq2seq.beam_search(decoder, p1, memory, start, **kw)
  one = seq2seq.beam_search(seq2seq.ensemble([decoder]), (p1,), (memory,), start, **kw)
  two = seq2seq.beam_search(seq2seq.ensemble([decoder, decoder]), (p1, p1), (memory, memory),
                            start, **kw)
  np.testing.assert_array_equal(one.tokens, alone.tokens)
  np.testing.assert_allclose(one.scores, alone.scores, rtol=1e-5)
  for a, b in zip(two, one):
    np.testing.assert_array_equal(a, b)
  mixed = seq2seq.greedy(seq2seq.ensemble([decoder, decoder]), (p1, p2), (memory, memory),
                         start, max_len=6, eos=EOS)
  s1, s2 = decoder.init_state(p1, memory), decoder.init_state(p2, memory)
  token, done = start, np.zeros(2, bool)
  step = jax.jit(lambda p, s, t: decoder.step(p, memory, s, t))
  for t in range(6):
    s1, l1, _ = step(p1, s1, token)
    s2, l2, _ = step(p2, s2, token)
    token = jnp.argmax(jax.nn.log_softmax(l1) + jax.nn.log_softmax(l2), -1)
    for b in range(2):
      if not done[b] and t < int(mixed.lengths[b]):
        assert int(mixed.tokens[b, t]) == int(token[b])
    done |= np.asarray(token) == EOS
  with pytest.raises(ValueError, match="vocabulary"):
    seq2seq.ensemble([decoder, toy_decoder(7)[0]])


# -- MIXER ---------------------------------------------------------------------------------


def _mixer_case(delta, seed=12):
  from rnn_jax.seq2seq import mixer
  decoder, init = toy_decoder(6, sharpness=1.0)
  params = init(jax.random.key(seed))
  memory = _memory(seed=seed)
  start = jnp.full((2,), BOS)
  targets = jnp.array([[3, 4, 5, 2, EOS, 0], [2, 2, EOS, 0, 0, 0]])
  lengths = jnp.array([5, 3])
  run = lambda p: mixer.rollout(decoder, p, memory, start, targets, lengths, delta,
                                jax.random.key(4), eos=EOS)
  return decoder, params, memory, start, targets, lengths, run


def test_mixer_with_delta_zero_is_cross_entropy_training():
  from rnn_jax.seq2seq import mixer
  decoder, params, memory, start, targets, lengths, run = _mixer_case(0)
  mask = jnp.arange(6)[None] < lengths[:, None]
  baseline = {"w": jnp.ones((6,)), "c": jnp.array(0.3)}

  def mixer_loss(p):
    return mixer.loss(run(p), targets, jnp.array([0.5, 0.1]), baseline)[0]

  def xent(p):
    logits, _ = seq2seq.teacher_forcing(decoder, p, memory, start, targets)
    gold = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    return -jnp.sum(gold * mask) / 2

  out = run(params)
  np.testing.assert_array_equal(out.xent_mask, mask)
  assert not bool(out.rl_mask.any())
  np.testing.assert_array_equal(out.tokens, jnp.where(mask, targets, 0))
  (a, ga), (b, gb) = jax.value_and_grad(mixer_loss)(params), jax.value_and_grad(xent)(params)
  np.testing.assert_array_equal(a, b)
  for x, y in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
    np.testing.assert_array_equal(x, y)


def test_mixer_splits_each_row_and_samples_what_sampling_writes():
  from rnn_jax.seq2seq import mixer
  decoder, params, memory, start, targets, lengths, run = _mixer_case(2)
  out = run(params)
  for b, split in enumerate([3, 1]):  # L_b - 2 steps forced
    np.testing.assert_array_equal(out.tokens[b, :split], targets[b, :split])
    assert bool(out.xent_mask[b, :split].all()) and not bool(out.xent_mask[b, split:].any())
    assert bool(out.rl_mask[b, split]) and not bool(out.rl_mask[b, :split].any())
  assert not bool((out.xent_mask & out.rl_mask).any())
  # All of it REINFORCE (delta >= every length): the samples of `sample` with the same key.
  _, params, memory, start, targets, lengths, run = _mixer_case(6)
  out = run(params)
  sampled = seq2seq.sample(decoder, params, memory, start, jax.random.key(4), max_len=6, eos=EOS)
  assert not bool(out.xent_mask.any())
  np.testing.assert_array_equal(out.rl_mask, sampled.mask)
  np.testing.assert_allclose(out.log_probs, sampled.log_probs, rtol=1e-6)
  ended = sampled.mask & (jnp.arange(6)[None] == sampled.lengths[:, None])
  np.testing.assert_array_equal(out.tokens, jnp.where(ended, EOS, sampled.tokens))


def test_mixer_baseline_learns_the_reward_without_touching_the_policy():
  from rnn_jax.seq2seq import mixer
  decoder, params, memory, start, targets, lengths, run = _mixer_case(3)
  out = run(params)
  rewards = jnp.array([0.8, 0.2])
  baseline = mixer.init_baseline(6)
  # The regressor's squared error sends no gradient into the decoder (features stopped) ...
  g = jax.grad(lambda p: mixer.loss(run(p), targets, rewards, baseline)[1]["baseline_mse"])(params)
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree_util.tree_leaves(g))
  # ... and the policy's loss sends none into the regressor (baseline stopped).
  g = jax.grad(lambda w: mixer.loss(out, targets, rewards, w)[1]["reinforce"])(baseline)
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree_util.tree_leaves(g))
  # The regressor fits the rewards by gradient descent on its squared error.
  step = jax.jit(lambda w: jax.tree_util.tree_map(
      lambda a, d: a - 0.1 * d, w, jax.grad(lambda v: mixer.loss(out, targets, rewards, v)[0])(w)))
  first = float(mixer.loss(out, targets, rewards, baseline)[1]["baseline_mse"])
  for _ in range(200):
    baseline = step(baseline)
  assert float(mixer.loss(out, targets, rewards, baseline)[1]["baseline_mse"]) < 0.2 * first


def test_mixer_delta_schedule():
  from rnn_jax.seq2seq import mixer
  got = [int(mixer.delta_schedule(i, 2, 100, 7)) for i in (0, 99, 100, 250, 399, 10_000)]
  assert got == [0, 0, 2, 4, 6, 7]
  with pytest.raises(ValueError, match="readout"):
    plain = seq2seq.Decoder(lambda p, m: None, lambda *a: None, 5)
    mixer.rollout(plain, {}, None, jnp.zeros((1,)), jnp.zeros((1, 2), jnp.int32),
                  jnp.array([2]), 0, jax.random.key(0), eos=EOS)
