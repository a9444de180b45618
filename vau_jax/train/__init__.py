"""Generic training stack: optimizer, pure step, checkpoints, writers, trainer."""
