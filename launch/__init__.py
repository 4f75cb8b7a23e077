"""Sweeps over local accelerators or SLURM, and result tables beside the papers' numbers."""
