"""Runs: the run config, training, evaluation, and run folders read back."""
