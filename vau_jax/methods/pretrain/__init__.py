"""Pretraining runs that stand in for pretrained checkpoints the tiny presets cannot download:
``clip.py`` (the tiny CLIP, contrastive on SynthVAD frame captions) and ``llm.py`` (the tiny
LLaMA, text only). Each is saved as a converted checkpoint other methods load."""
