"""Checks made before an edit rolls workers: the broker answers, Triton serves the model."""
