"""T-VAU (Text-guided fine-grained VAU): AHD heatmaps, RAE region prompts, a frozen LVLM.

``method`` (the :class:`~vau_jax.methods.base.Method`), ``data`` (layout tree, masks, tapped
features), ``questions`` (the constructed questions as LVLM rows), ``evaluation`` (metrics and
prediction files), ``report``.
"""
