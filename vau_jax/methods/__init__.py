"""Methods: each composes models, stages and evaluators and exposes ``run(config, workdir, mode)``.

``python -m vau_jax.main --config=configs/<m>.py`` imports ``vau_jax.methods.<config.method>``.
"""
