"""Experiments: one module per paper or application, each with its flagfiles."""
