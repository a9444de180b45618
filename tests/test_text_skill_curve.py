"""scripts/text_skill_curve.py's value-started time rows (``--time_embed=sin``)."""

import importlib.util
import os

import numpy as np
import pytest

from vau_jax.data import corpus


def _script():
    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "text_skill_curve.py")
    spec = importlib.util.spec_from_file_location("text_skill_curve", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_rows_start_nearer_for_nearer_times(tmp_path):
    tok = corpus.ensure_tokenizer(str(tmp_path), 712, num_videos=3, name="synthvad_times")
    rng = np.random.default_rng(0)
    emb = rng.normal(0.0, 1.0, (tok.vocab_size, 128)).astype(np.float32)
    params = {"model": {"embed_tokens": {"embedding": emb.copy()}}}
    out = np.asarray(_script().sin_time_rows(params, tok)["model"]["embed_tokens"]["embedding"])

    def row(t):
        return out[tok.sp.piece_to_id(f"▁{t:.1f}s")]

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    base = row(5.0)
    # the sinusoid half makes nearby times similar; the random half keeps every row its own
    assert cos(base, row(5.3)) > cos(base, row(7.0)) > cos(base, row(12.0))
    assert cos(base, row(5.1)) < 0.9
    norms = np.linalg.norm(out, axis=1)
    assert abs(np.linalg.norm(base) / norms.mean() - 1.0) < 0.2
    other = [i for i in range(tok.vocab_size) if not tok.sp.id_to_piece(i).endswith("s")]
    np.testing.assert_array_equal(out[other], emb[other])  # only time rows change

    plain = corpus.ensure_tokenizer(str(tmp_path), 512, num_videos=3, name="synthvad")
    with pytest.raises(SystemExit, match="no '▁0.0s' token"):
        _script().sin_time_rows({"model": {"embed_tokens": {"embedding": emb[:512]}}}, plain)
