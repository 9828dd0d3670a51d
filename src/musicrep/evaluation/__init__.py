"""Evaluation: opening runs, the hold-out test, transfer probes and baselines, retrieval, tagging, sweeps."""
