"""Sweep files: one module per sweep, run by `python -m launch.sweep --sweep=<file or name>`.

A sweep file is a Python module with:

    EXPERIMENT = "experiments.lm"        # run as `python -m <EXPERIMENT>` from the repo root
    FLAGFILE = "experiments/flagfiles/lm/zaremba_medium.flags"   # from the repo root
    PAPER = {                            # optional: the paper's numbers for the table
        "zaremba_medium": {"valid/ppl": 82.2, "test/ppl": 79.7},
    }

    def trials() -> list[dict]:          # one dict of flags per trial
      return sweep_lib.product(hidden_size=[200, 650], dropout=[0.0, 0.5])

A trial's dict maps flag names to values (str, int, float, bool, or a list of
them, written comma-separated); each becomes `--name=value` after
`--flagfile=<FLAGFILE>`, so it overrides the flagfile (booleans are written
`--name=true` / `--name=false`). Two keys are special:

    flagfile   the trial's own flagfile, replacing FLAGFILE (e.g. one trial per model size)
    _name      the trial's name, instead of the one derived from its flags

Derived names join the flags that vary between trials, in the dict's order:
`hidden_size=650,dropout=0.5`; a varying `flagfile` shows as its file name
without `.flags`; other characters than letters, digits and `. _ = + -` become
`_` (commas inside a list value become `+`). A trial with no varying flag is
`baseline`. Names must be unique. `launch.sweep_lib` has `product`, `zip_` and
`ablations` (one flag changed at a time from a baseline, named after the change).

PAPER maps a key to {metric: number}, metric being a key of the experiment's
results.json. A key selects trials: a trial's name, or comma-separated parts
each of which is a part of the trial's name or one of its flags written
`flag=value` (`cell=lstm,seq_len=100`; a flagfile also matches by its file
name without `.flags`). A trial gets the numbers of every key that selects it,
keys with more parts winning. Every key must select at least one trial.

Loading a sweep file does not need the experiment to exist; the launcher
checks the experiment's flag names (from `--helpfull`) and the flagfiles only
before starting trials.
"""
