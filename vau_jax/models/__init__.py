"""Flax Linen model zoo: ViTs (CLIP, DINOv2, EVA), CLIP text, Q-Former, LLaMA."""
