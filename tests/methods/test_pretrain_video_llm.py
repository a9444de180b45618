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
    from vau_jax.methods.pretrain.prior_text import PRIOR_MC_QUESTIONS

    c = tiny_vagpt(os.path.join(os.path.dirname(vagpt_run), "data"))
    assert c.base_llm.object_mc  # the default (README, VA-GPT); first the rows without it
    c.base_llm.object_mc = False
    m = V.VideoPretrain(c)
    m.prepare()
    assert all(v.id.startswith("pretrain_") for v in m.videos["train"] + m.videos["eval"])
    rows = m.rows("train")
    video = [r for r in rows if r["video_mask"].any()]
    text = [r for r in rows if not r["video_mask"].any()]
    assert len(text) == round(float(c.base_llm.text_replay) * len(video))
    decode = lambda r: m.tok.decode([int(t) for t in r["input_ids"][r["attention_mask"]]])  # noqa: E731
    assert not any("\nA. " in decode(r) for r in video)  # generic captions: no lettered options
    # the text replay: about written reports, or a prior sentence alone (the text mix's
    # prior-only multiple choice), never about a video
    assert all(
        "Report:" in decode(r) or any(q in decode(r) for q in PRIOR_MC_QUESTIONS) for r in text
    )
    assert all(int(r["video_mask"].sum()) == m.num_video_tokens for r in video)
    assert len(m.rows("eval")) > 0 and not any(not r["video_mask"].any() for r in m.rows("eval"))
    assert np.all([r["loss_mask"].any() for r in rows])
    # base_llm.object_mc adds lettered object questions about the same videos, and nothing
    # else changes (the rows drawn without it stay the same)
    c.base_llm.object_mc = True
    mc_rows = [r for r in m.rows("train") if r["video_mask"].any()]
    lettered = [decode(r) for r in mc_rows if "\nA. " in decode(r)]
    assert lettered and all("Answer with the option's letter" in t for t in lettered)
    assert sorted(decode(r) for r in mc_rows if "\nA. " not in decode(r)) == sorted(
        decode(r) for r in video
    )


def test_cached_base_loads_into_either_llm_layout(vagpt_run):
    """``scan_layers`` is not in the cache key: the base trained with unrolled blocks loads
    into the scan layout (every block stacked) with the very same numbers, and a cache that
    does not fit the model is refused naming its folder."""
    import jax

    from vau_jax.models.llama_layout import match_layer_layout

    c = tiny_vagpt(os.path.join(os.path.dirname(vagpt_run), "data"))
    unrolled = V.ensure_base_llm(c)
    c.scan_layers = True
    scanned = V.ensure_base_llm(c)
    assert "layers_0" in unrolled["llm"]["model"] and "layers" in scanned["llm"]["model"]
    n = len([k for k in unrolled["llm"]["model"] if k.startswith("layers_")])
    assert jax.tree.leaves(scanned["llm"]["model"]["layers"])[0].shape[0] == n
    jax.tree.map(
        np.testing.assert_array_equal,
        match_layer_layout(unrolled["llm"], scanned["llm"]),
        scanned["llm"],
    )
    for part in set(unrolled) - {"llm"}:
        jax.tree.map(np.testing.assert_array_equal, unrolled[part], scanned[part])

    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), unrolled)
    target["query_proj"]["kernel"] = jax.ShapeDtypeStruct((3, 3), np.float32)
    with pytest.raises(ValueError, match="does not match the model.*query_proj"):
        V.restore_base(os.path.join(V.base_dir(c), "params"), target)


def test_alignment_steps_train_the_visual_path_with_the_llm_frozen(tmp_path):
    """``base_llm.align_steps`` adds LLaVA's modality-alignment stage before the joint
    caption steps: the same rows and optimizer, the LLM frozen; 0 (default) adds nothing."""
    import re

    c = tiny_vagpt(str(tmp_path))
    assert c.base_llm.align_steps == 0
    assert [s.name for s in V.VideoPretrain(c).stages()] == ["captions"]
    key = V.base_dir(c)
    c.base_llm.align_steps = 7
    assert V.base_dir(c) != key  # a different base model, a different cache
    align, captions = V.VideoPretrain(c).stages()
    assert (align.name, align.num_steps, captions.num_steps) == ("align", 7, c.base_llm.steps)
    assert align.optimizer["total_steps"] == 7 and align.optimizer["lr"] == captions.optimizer["lr"]
    frozen = lambda opt, path: any(re.search(f, path) for f in opt.get("freeze", []))  # noqa: E731
    for path in ("llm/model/layers_0/self_attn/q_proj/kernel", "llm/lm_head/kernel"):
        assert frozen(align.optimizer, path) and not frozen(captions.optimizer, path)
    for path in ("qformer/query_tokens", "content_proj/kernel", "context_proj/kernel"):
        assert not frozen(align.optimizer, path)


def test_the_tiny_llm_reads_its_text_pretrainings_tokenizer(tmp_path, monkeypatch):
    """The LLM's tokenizer is the one its text pretraining read, not the tiny CLIP's."""
    from vau_jax.data import corpus
    from vau_jax.methods.pretrain import vlm_parts

    made = []

    def fake(data_dir, vocab_size=512, num_videos=200, name="synthvad"):
        made.append(name)
        return type("Tok", (), {"vocab_size": 300, "bos_id": 2, "eos_id": 3, "pad_id": 0})()

    monkeypatch.setattr(corpus, "ensure_tokenizer", fake)
    c = tiny_vagpt(str(tmp_path))
    c.base_llm.text_pretrain.tokenizer = "synthvad_letters"
    assert c.clip_pretrain.get("tokenizer", "synthvad") == "synthvad"
    tok, cfg = vlm_parts.tiny_llm(c)
    assert made == ["synthvad_letters"] and cfg.vocab_size == 300
