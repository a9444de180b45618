"""The base video LLM (``methods/pretrain/video_llm.py``): one cached checkpoint per
encoder/LLM setting whatever the VA-GPT seed; caption rows of pretrain-split videos only,
with the text replay beside them."""

import os

import numpy as np
import pytest

from tests.tiny_configs import tiny_vagpt
from vau_jax.methods.pretrain import video_llm as V


def test_cache_key_ignores_the_vagpt_seed_and_stage_settings(tmp_path):
    a, b = tiny_vagpt(str(tmp_path)), tiny_vagpt(str(tmp_path))
    b.seed, b.stage1.steps, b.use_sets = 7, 99, False
    assert V.base_dir(a) == V.base_dir(b)
    b.base_llm.text_replay = 0.5  # what the base model is trained on is part of its key
    assert V.base_dir(a) != V.base_dir(b)
    b = tiny_vagpt(str(tmp_path))
    b.base_llm.seed = 1
    assert V.base_dir(a) != V.base_dir(b)


@pytest.mark.slow
def test_caption_rows_are_pretrain_videos_plus_text_replay(vagpt_run):
    c = tiny_vagpt(os.path.join(os.path.dirname(vagpt_run), "data"))
    m = V.VideoPretrain(c)
    m.prepare()
    assert all(v.id.startswith("pretrain_") for v in m.videos["train"] + m.videos["eval"])
    rows = m.rows("train")
    video = [r for r in rows if r["video_mask"].any()]
    text = [r for r in rows if not r["video_mask"].any()]
    assert len(text) == round(float(c.base_llm.text_replay) * len(video))
    decode = lambda r: m.tok.decode([int(t) for t in r["input_ids"][r["attention_mask"]]])  # noqa: E731
    assert not any("\nA. " in decode(r) for r in video)  # generic captions: no lettered options
    assert all("Report:" in decode(r) for r in text)
    assert all(int(r["video_mask"].sum()) == m.num_video_tokens for r in video)
    assert len(m.rows("eval")) > 0 and not any(not r["video_mask"].any() for r in m.rows("eval"))
    assert np.all([r["loss_mask"].any() for r in rows])
