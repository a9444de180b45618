"""Contrastive pretraining pieces: the soft-target loss, prompts, pixel normalisation."""

import jax
import jax.numpy as jnp
import numpy as np

from vau_jax.data import synthvad
from vau_jax.methods.pretrain.clip import (
    CLIP_MEAN,
    CLIP_STD,
    ZEROSHOT_CLASSES,
    class_prompts,
    normalize_pixels,
    soft_clip_loss,
)


def test_soft_loss_equals_clip_loss_for_distinct_captions():
    logits = jax.random.normal(jax.random.key(0), (5, 5)) * 3
    ids = jnp.arange(5)
    ref = 0.5 * (
        -jnp.mean(jnp.diag(jax.nn.log_softmax(logits, -1)))
        - jnp.mean(jnp.diag(jax.nn.log_softmax(logits.T, -1)))
    )
    np.testing.assert_allclose(float(soft_clip_loss(logits, ids)), float(ref), rtol=1e-6)


def test_soft_loss_does_not_punish_same_caption_pairs():
    # two frames with the same caption: any split of probability between them is optimal
    ids = jnp.array([0, 0, 1])
    big = 50.0
    logits = jnp.array([[big, big, 0.0], [big, big, 0.0], [0.0, 0.0, big]])
    # rows 0/1 put half their mass on each same-caption text: loss = entropy log(2) for them
    expected = (2 * np.log(2.0) + 0.0) / 3
    np.testing.assert_allclose(float(soft_clip_loss(logits, ids)), expected, atol=1e-5)
    worse = logits.at[0, 1].set(0.0)  # row 0 ignores its same-caption partner
    assert float(soft_clip_loss(worse, ids)) > float(soft_clip_loss(logits, ids))


def test_prompts_cover_every_class_and_spatial_word():
    assert (
        ZEROSHOT_CLASSES[-1] == "normal"
        and len(ZEROSHOT_CLASSES) == len(synthvad.ANOMALY_TYPES) + 1
    )
    for k in synthvad.ANOMALY_TYPES:
        prompts = class_prompts(k)
        assert len(prompts) == len(synthvad.SPATIAL_WORDS) and all("{" not in p for p in prompts)


def test_normalize_pixels_uint8_and_float_agree():
    px = np.random.default_rng(0).integers(0, 256, size=(2, 4, 4, 3), dtype=np.uint8)
    a = normalize_pixels(jnp.asarray(px))
    b = normalize_pixels(jnp.asarray(px, jnp.float32) / 255.0)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(a)[0, 0, 0], (px[0, 0, 0] / 255.0 - CLIP_MEAN) / CLIP_STD, rtol=1e-5
    )


def test_pretrained_dir_does_not_depend_on_where_the_data_dir_is():
    """Relative or absolute, moved: the same pretraining config has the same cache name."""
    import os
    import sys

    from vau_jax.methods.runner import pretrained_dir

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))
    import vagpt as vagpt_config

    a = vagpt_config.get_config("tiny")
    b = vagpt_config.get_config("tiny")
    a.data_dir, b.data_dir = "data_cache", "/mnt/elsewhere/data_cache"
    a.base_llm.text_pretrain.data_dir = a.data_dir
    b.base_llm.text_pretrain.data_dir = b.data_dir
    pa, pb = pretrained_dir(a, "x"), pretrained_dir(b, "x")
    assert os.path.basename(pa) == os.path.basename(pb)
    assert pa.startswith("data_cache/") and pb.startswith("/mnt/elsewhere/data_cache/")
    b.base_llm.steps += 1  # what is trained still counts
    assert os.path.basename(pretrained_dir(b, "x")) != os.path.basename(pa)


def test_a_field_at_its_key_default_leaves_the_cache_name_as_before_it_existed():
    """``tokenizer="synthvad"`` trains what caches made before the field held: same name;
    another tokenizer is another pretraining."""
    import os
    import sys

    from vau_jax.methods.runner import pretrained_dir

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))
    import text_pretrain as text_pretrain_config

    with_field = text_pretrain_config.get_config("tiny")
    assert with_field.tokenizer == "synthvad"
    without = text_pretrain_config.get_config("tiny")
    del without["tokenizer"]
    assert pretrained_dir(with_field, "x") == pretrained_dir(without, "x")
    with_field.tokenizer = "synthvad_letters"
    assert pretrained_dir(with_field, "x") != pretrained_dir(without, "x")


def test_the_prior_wording_keys_vagpts_text_llm_and_keeps_tvaus():
    """The prior sentences' word (``prior_types_word``): "anomaly", what every cache made
    before the field trained, keys as before the field existed; VA-GPT's "crime" (the
    paper's, its TETG's ``tetg.types_word``) is another pretraining; T-VAU, whose corpus has no
    prior rows, keeps the name its cached LVLM was measured with."""
    import os
    import sys

    from vau_jax.methods.pretrain.text_llm import prior_types_word
    from vau_jax.methods.runner import pretrained_dir

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))
    import text_pretrain as text_pretrain_config
    import tvau as tvau_config
    import vagpt as vagpt_config

    old = text_pretrain_config.get_config("tiny")
    del old["prior_types_word"]
    assert prior_types_word(old) == "anomaly"  # what the rows of such a cache said
    anomaly = text_pretrain_config.get_config("tiny")
    anomaly.prior_types_word = "anomaly"
    assert pretrained_dir(anomaly, "x") == pretrained_dir(old, "x")
    crime = text_pretrain_config.get_config("tiny")
    assert crime.prior_types_word == "crime"
    assert pretrained_dir(crime, "x") != pretrained_dir(old, "x")

    v = vagpt_config.get_config("tiny")
    assert v.base_llm.text_pretrain.prior_types_word == v.tetg.types_word == "crime"
    v.tetg.types_word = "anomaly"  # as a --config.tetg.types_word override: both move
    assert v.base_llm.text_pretrain.prior_types_word == "anomaly"
    assert pretrained_dir(v.base_llm.text_pretrain, "x") != pretrained_dir(crime, "x")
    t = tvau_config.get_config("tiny").base_llm.text_pretrain
    assert "prior_mc" not in t.mix and t.prior_types_word == "anomaly"
    t_old = tvau_config.get_config("tiny").base_llm.text_pretrain
    del t_old["prior_types_word"]
    assert pretrained_dir(t, "x") == pretrained_dir(t_old, "x")
