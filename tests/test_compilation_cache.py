"""`--compilation_cache_dir` (experiments.common.run): JAX's persistent compilation cache
on by default in ~/.cache/rnn_jax/xla, the environment's choice kept, '' turning it off,
and compiled programs written there for the next run."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# An experiment's entry point: reports JAX's cache settings, then compiles one program.
ENTRY = r"""
import json
from experiments import common

def main(argv):
  import jax, jax.numpy as jnp
  print(json.dumps({"dir": jax.config.jax_compilation_cache_dir,
                    "enabled": jax.config.jax_enable_compilation_cache,
                    "max_size": jax.config.jax_compilation_cache_max_size}))
  jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()

common.run(main)
"""


def run_entry(tmp_path, *flags, env_dir=None):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_PLATFORMS="cpu",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # cache even a tiny program
  if env_dir:
    env["JAX_COMPILATION_CACHE_DIR"] = env_dir
  out = subprocess.run([sys.executable, "-c", ENTRY, *flags], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def entries(path):
  return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_default_cache_keeps_the_compiled_program(tmp_path):
  from experiments.common import COMPILATION_CACHE_MAX_BYTES
  default = str(tmp_path / "xdg" / "rnn_jax" / "xla")
  got = run_entry(tmp_path)
  assert got == {"dir": default, "enabled": True, "max_size": COMPILATION_CACHE_MAX_BYTES}
  first = entries(default)
  assert first, "nothing was written to the cache"
  run_entry(tmp_path)  # the same program again: read back, nothing new written
  assert entries(default) == first


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_chosen_directory_is_used(tmp_path, how):
  chosen = str(tmp_path / "chosen")
  got = (run_entry(tmp_path, f"--compilation_cache_dir={chosen}") if how == "flag"
         else run_entry(tmp_path, env_dir=chosen))
  assert got["dir"] == chosen and got["enabled"] is True
  assert entries(chosen)
  assert not entries(tmp_path / "xdg" / "rnn_jax" / "xla")


def test_empty_turns_it_off(tmp_path):
  got = run_entry(tmp_path, "--compilation_cache_dir=")
  assert got["enabled"] is False and got["dir"] is None
  assert not entries(tmp_path / "xdg" / "rnn_jax" / "xla")
