"""Sweeps over local accelerators or SLURM, and result tables beside the papers' numbers.

    sweep.py      `python -m launch.sweep`: runs a sweep file's trials (usage in its docstring)
    table.py      `python -m launch.table DIR`: markdown/CSV table, plots
    sweep_lib.py  `product`, `zip_`, `ablations` for writing a sweep's trials()
    spec.py       loading and checking a sweep file: trial names, commands, PAPER, a trial's
                  resolved flags and identity
    trial.py      one trial's files in its workdir (trial_flags.txt/.json, launch.log, status),
                  an attempt (heartbeat, time limits), and its status (RELIABILITY.md)
    local.py      device slots and the local pool
    slurm.py      submitit: SLURM job arrays with requeue, and its LocalExecutor
    sweeps/       the shipped sweep files; the file format is in sweeps/__init__.py
"""
