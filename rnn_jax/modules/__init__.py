"""rnn_jax's layers as Flax modules, Linen and NNX: thin adapters over `rnn_jax.layers`.

    rnn_jax.modules.linen   RNN, Bidirectional, Stack, LayerModule as `flax.linen` Modules
    rnn_jax.modules.nnx     the same as `flax.nnx` Modules

The package is named for what it holds (modules) rather than `rnn_jax.flax`, which would
read like the `flax` package itself. Converting Flax's own cells and weights is
`rnn_jax.interop.flax`'s job. Import the submodule you use; this package imports neither.
"""
