"""``fit_params`` (a converted tree laid over a model's subtree) and the tokenizer files a
conversion keeps beside the weights."""

import json
import logging
import os

import jax
import numpy as np
import pytest
from flax import linen as nn

from vau_jax.convert.checkpoint import (
    load_converted_tokenizer,
    read_converted_config,
    save_converted,
)
from vau_jax.convert.fit import QFORMER_VISION_KV, fit_params
from vau_jax.tree import CheckpointMismatchError

KV = "encoder/layer_0/crossattention/attention/key/kernel"


def _tree(kv_in: int, vocab: int = 10) -> dict:
    """A Q-Former-like nested tree: cross-attention K reads ``kv_in``-wide tokens."""
    rng = np.random.default_rng(kv_in + vocab)
    return {
        "embeddings": {"word_embeddings": {"embedding": rng.normal(size=(vocab, 4))}},
        "encoder": {
            "layer_0": {
                "crossattention": {
                    "attention": {
                        "key": {"kernel": rng.normal(size=(kv_in, 4)), "bias": np.ones(4)}
                    }
                }
            }
        },
    }


def test_fit_takes_converted_values_and_keeps_fresh_reinit_leaves(caplog):
    converted, target = _tree(6), _tree(3)
    target_kv = jax.numpy.asarray(
        target["encoder"]["layer_0"]["crossattention"]["attention"]["key"]["kernel"]
    )
    target["encoder"]["layer_0"]["crossattention"]["attention"]["key"]["kernel"] = target_kv
    with caplog.at_level(logging.INFO, logger="absl"):
        out = fit_params(converted, target, source="ckpt", reinit=QFORMER_VISION_KV)
    assert jax.tree.structure(out) == jax.tree.structure(target)
    key = out["encoder"]["layer_0"]["crossattention"]["attention"]["key"]
    assert key["kernel"] is target_kv  # the fresh value itself (stays on its sharding)
    np.testing.assert_array_equal(
        key["bias"], converted["encoder"]["layer_0"]["crossattention"]["attention"]["key"]["bias"]
    )
    np.testing.assert_array_equal(
        out["embeddings"]["word_embeddings"]["embedding"],
        converted["embeddings"]["word_embeddings"]["embedding"],
    )
    assert f"{KV} (6, 4) -> (3, 4)" in caplog.text


def test_fit_refuses_other_mismatches_and_missing_leaves_naming_them():
    with pytest.raises(
        CheckpointMismatchError, match=r"word_embeddings/embedding.*\(12, 4\).*\(10, 4\)"
    ):
        fit_params(_tree(3, vocab=10), _tree(3, vocab=12), source="ckpt", reinit=QFORMER_VISION_KV)
    with pytest.raises(CheckpointMismatchError, match=f"{KV}.*\\(3, 4\\)"):
        fit_params(_tree(6), _tree(3), source="ckpt")  # no reinit: a width mismatch is an error
    converted = _tree(3)
    del converted["embeddings"]
    with pytest.raises(CheckpointMismatchError, match="(?s)ckpt: .*missing 'embeddings/word"):
        fit_params(converted, _tree(3), source="ckpt")
    # leaves the model does not have are ignored
    target = _tree(3)
    del target["embeddings"]
    out = fit_params(_tree(3), target, source="ckpt")
    assert set(out) == {"encoder"}


def test_conversion_keeps_the_source_folders_tokenizer_files(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from vau_jax.models import registry

    src = tmp_path / "hf"
    (src / "qformer_tokenizer").mkdir(parents=True)
    for rel in ("tokenizer_config.json", "special_tokens_map.json", "qformer_tokenizer/vocab.txt"):
        (src / rel).write_text("{}")
    tk = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "hello": 2}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.save(str(src / "qformer_tokenizer" / "tokenizer.json"))
    (src / "qformer_tokenizer" / "tokenizer_config.json").write_text(
        json.dumps({"pad_token": "[PAD]", "unk_token": "[UNK]"})
    )
    (src / "model.safetensors").write_text("not copied")
    module = registry.build("tiny-qformer")
    abstract = nn.unbox(registry.abstract_params("tiny-qformer"))
    params = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract)
    dst = tmp_path / "converted"
    save_converted(str(dst), module, params, source=str(src))
    kept = sorted(
        os.path.relpath(os.path.join(d, f), dst)
        for d, _, fs in os.walk(dst)
        for f in fs
        if "params" not in os.path.relpath(d, dst)
    )
    assert kept == [
        "config.json",
        "qformer_tokenizer/tokenizer.json",
        "qformer_tokenizer/tokenizer_config.json",
        "qformer_tokenizer/vocab.txt",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ]
    assert read_converted_config(str(dst)) == module.config
    assert load_converted_tokenizer(str(dst)) is None  # no top-level tokenizer.json
    tok = load_converted_tokenizer(str(dst), "qformer_tokenizer")
    assert tok.encode("hello") == [2] and tok.pad_id == 0
