"""Evaluation: metrics, evaluators and generation."""
