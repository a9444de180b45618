"""Method-specific heads that sit between the shared encoders and the LLM.

One file per head, each a Flax Linen module with a frozen-dataclass config and logically
named parameters, like the rest of the model zoo:

- ``sets.py``: VA-GPT Spatial Effective Token Selection (DINOv2 inter-frame L1 distance,
  keep the top ``round(K*N)`` CLIP tokens in their original order).
- ``tetg.py``: VA-GPT Temporal Effective Token Generation (MLP anomaly classifier on CLIP
  class embeddings; anomaly interval written into a text template).
- ``ltc.py``: VAD-LLaMA anomaly predictor and Long-Term Context memory (normal / abnormal /
  history lists carried through ``lax.scan``).
- ``ahd.py``: T-VAU Anomaly Heatmap Decoder (multi-layer ViT features vs normal/abnormal
  text prompts, learned layer weights).
- ``rae.py``: T-VAU Region-aware Anomaly Encoder (heatmap temporal difference -> conv ->
  3x3 region + global prompts).

See DESIGN.md section 5 for the behaviour each head must reproduce.
"""
