"""Generic training stack: optimizer, train state + layout, pure step, step contexts,
checkpoints, writers, trainer. Knows no method and no converter (DESIGN §2)."""
