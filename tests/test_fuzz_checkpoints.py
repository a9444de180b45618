"""Hostile checkpoint files: safetensors, GGUF, PyTorch pickles and converted checkpoints.

Every loader returns or raises ``CheckpointMismatchError`` naming the file (or folder), in
time, and a header claiming ~10^12 elements fails in well under a second without allocating
(fuzzing helpers and contract: ``tests/hostile.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile import (
    DEEP_JSON,
    expect_documented,
    fuzz_settings,
    mutated_bytes,
    mutated_json,
    mutated_json_value,
)
from vau_jax.tree import CheckpointMismatchError

ONLY_CHECKPOINT = (CheckpointMismatchError,)
# orbax leaves the futures of a failed metadata read unretrieved; they surface as
# "Exception ignored" warnings in whichever test runs next.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


# ----------------------------------------------------------------------------- safetensors

_rng = np.random.default_rng(0)
TENSORS = {
    "a.weight": _rng.random((2, 3)).astype(np.float32),
    "b.bias": np.arange(4, dtype=np.int64),
    "c.half": _rng.random(3).astype(np.float16),
}
BF16 = np.asarray([1.0, -2.0, 0.5], np.float32).view(np.uint32) >> 16  # bfloat16 bits


def safetensors_bytes(header: dict, data: bytes, header_len: int | None = None) -> bytes:
    """A ``.safetensors`` file: u64 header length, JSON header, data (length may lie)."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    n = len(text) if header_len is None else header_len
    return struct.pack("<Q", n) + text + data


def _valid_safetensors() -> tuple[dict, bytes]:
    header, chunks, offset = {"__metadata__": {"format": "np"}}, [], 0
    names = {np.float32: "F32", np.int64: "I64", np.float16: "F16"}
    for key, arr in TENSORS.items():
        raw = arr.tobytes()
        header[key] = {
            "dtype": names[arr.dtype.type],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    raw = BF16.astype(np.uint16).tobytes()
    header["d.bf16"] = {"dtype": "BF16", "shape": [3], "data_offsets": [offset, offset + 6]}
    chunks.append(raw)
    return header, b"".join(chunks)


SAFE_HEADER, SAFE_DATA = _valid_safetensors()
SAFE_VALID = safetensors_bytes(SAFE_HEADER, SAFE_DATA)


@st.composite
def hostile_safetensors(draw: st.DrawFn) -> bytes:
    """Byte edits (the u64 header length among the fields), header JSON edits (shapes,
    offsets, dtypes; true or lying length), or random bytes."""
    kind = draw(st.sampled_from(("bytes", "header", "header", "random")))
    if kind == "bytes":
        return draw(mutated_bytes(SAFE_VALID, fields=[(0, 8)]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    header = draw(mutated_json_value(SAFE_HEADER))
    header = header if isinstance(header, dict) else {"x": header}
    length = draw(st.none() | st.sampled_from((0, 1, 7, 10**12, 2**64 - 1)))
    return safetensors_bytes(header, SAFE_DATA, length)


def _safetensors_readers(folder: str, path: str):
    from vau_jax.convert.common import read_safetensors_dir
    from vau_jax.convert.hf_qformer import _read_selected
    from vau_jax.convert.torch_checkpoint import read_any

    return [
        (lambda: read_safetensors_dir(folder), path),
        (lambda: _read_selected(folder, lambda k: True), path),
        (lambda: read_any(path), path),
        (lambda: read_any(folder), path),
    ]


def test_valid_safetensors_reads(tmp_path):
    path = _write(tmp_path / "model.safetensors", SAFE_VALID)
    for call, _ in _safetensors_readers(str(tmp_path), path):
        out = call()
        np.testing.assert_array_equal(out["a.weight"], TENSORS["a.weight"])


@fuzz_settings(150)
@given(data=hostile_safetensors())
def test_safetensors(tmp_path, data):
    path = _write(tmp_path / "model.safetensors", data)
    for call, names in _safetensors_readers(str(tmp_path), path):
        expect_documented(call, names, allowed=ONLY_CHECKPOINT)


@pytest.mark.parametrize("lie", ["header_len", "shape"])
def test_safetensors_claiming_1e12_elements_fails_fast(tmp_path, lie):
    if lie == "header_len":
        data = safetensors_bytes(SAFE_HEADER, SAFE_DATA, header_len=10**12)
    else:
        header = {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}
        data = safetensors_bytes(header, b"\x00" * 64)
    path = _write(tmp_path / "model.safetensors", data)
    for call, names in _safetensors_readers(str(tmp_path), path):
        err = expect_documented(call, names, allowed=ONLY_CHECKPOINT, seconds=1.0)
        assert err is not None


# ----------------------------------------------------------------------------- HF folders


def _tiny_llama():
    """``(config, module, params)`` of a one-layer llama of width 8 (random weights)."""
    import flax.linen as nn
    import jax

    from vau_jax.models import llama

    cfg = llama.LlamaConfig(
        vocab_size=12,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=4,
        max_position_embeddings=32,
    )
    module = llama.module_from_config(cfg)
    args, kwargs = llama.dummy_inputs(cfg)
    return cfg, module, nn.unbox(module.init(jax.random.key(0), *args, **kwargs)["params"])


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A tiny llama ``save_pretrained``-style folder: ``config.json`` + ``model.safetensors``."""
    from safetensors.numpy import save_file

    from vau_jax.convert import export_hf, export_hf_config

    cfg, module, params = _tiny_llama()
    root = tmp_path_factory.mktemp("hf") / "tiny"
    root.mkdir()
    save_file(export_hf(module, params), str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps(export_hf_config(module)))
    return str(root)


@fuzz_settings(60, deadline_ms=None)
@given(draw=st.data())
def test_hf_folder(tmp_path, hf_folder, draw):
    from vau_jax.convert import load_hf

    root = str(tmp_path / "hf")
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(hf_folder, root)
    cfg_path = os.path.join(root, "config.json")
    with open(cfg_path) as f:
        config = json.load(f)
    if draw.draw(st.booleans(), label="config or weights"):
        _write(cfg_path, draw.draw(mutated_json(config), label="config.json"))
    else:
        st_path = os.path.join(root, "model.safetensors")
        with open(st_path, "rb") as f:
            valid = f.read()
        _write(st_path, draw.draw(mutated_bytes(valid, fields=[(0, 8)]), label="weights"))
    expect_documented(lambda: load_hf(root), root, allowed=ONLY_CHECKPOINT, seconds=30.0)


def test_hf_config_claiming_1e12_layers_fails_fast(tmp_path, hf_folder):
    from vau_jax.convert import load_hf

    root = str(tmp_path / "hf")
    shutil.copytree(hf_folder, root)
    cfg_path = os.path.join(root, "config.json")
    with open(cfg_path) as f:
        config = json.load(f)
    for key in ("num_hidden_layers", "hidden_size", "vocab_size"):
        _write(cfg_path, json.dumps({**config, key: 10**12}).encode())
        err = expect_documented(lambda: load_hf(root), root, allowed=ONLY_CHECKPOINT, seconds=2.0)
        assert err is not None and key in str(err), key


# ----------------------------------------------------------------------------- GGUF

H, V, FF, HEADS, KV, LAYERS = 32, 12, 32, 2, 1, 1


def _tiny_gguf_bytes(tmp_dir: str) -> bytes:
    """A one-layer llama GGUF (F32 and one Q8_0 tensor) with a gpt2 tokenizer."""
    import gguf

    rng = np.random.default_rng(1)
    path = os.path.join(tmp_dir, "tiny.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(LAYERS)
    w.add_context_length(32)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(H // HEADS)
    w.add_tokenizer_model("gpt2")
    tokens = ["<e>"] + [chr(ord("a") + i) for i in range(V - 2)] + ["ab"]
    w.add_token_list(tokens)
    w.add_token_types([3] + [1] * (V - 1))
    w.add_token_merges(["a b"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    dh = H // HEADS
    shapes = {
        "token_embd.weight": (V, H),
        "blk.0.attn_q.weight": (H, H),
        "blk.0.attn_k.weight": (KV * dh, H),
        "blk.0.attn_v.weight": (KV * dh, H),
        "blk.0.attn_output.weight": (H, H),
        "blk.0.ffn_gate.weight": (FF, H),
        "blk.0.ffn_up.weight": (FF, H),
        "blk.0.ffn_down.weight": (H, FF),
        "blk.0.attn_norm.weight": (H,),
        "blk.0.ffn_norm.weight": (H,),
        "output_norm.weight": (H,),
    }
    for name, shape in shapes.items():
        w.add_tensor(name, rng.normal(size=shape).astype(np.float32))
    q = gguf.quants.quantize(
        rng.normal(size=(V, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0
    )
    w.add_tensor("output.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(path, "rb") as f:
        return f.read()


def gguf_fields(data: bytes, tmp_dir: str) -> list[tuple[int, int]]:
    """``(offset, width)`` of every count / length / dim / offset field of a GGUF file."""
    import gguf

    path = _write(os.path.join(tmp_dir, "fields.gguf"), data)
    reader = gguf.GGUFReader(path)
    base = reader.data.ctypes.data
    out = [(8, 8), (16, 8)]  # tensor count, kv count
    fields = list(reader.fields.values()) + [t.field for t in reader.tensors]
    for field in fields:
        for part in field.parts:
            if part.dtype.itemsize in (4, 8) and part.size == 1:
                out.append((part.ctypes.data - base, part.dtype.itemsize))
    del reader
    return sorted(set(out))


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("gguf"))
    data = _tiny_gguf_bytes(tmp)
    return data, gguf_fields(data, tmp)


def test_valid_gguf_loads(tmp_path, tiny_gguf):
    from vau_jax.convert.gguf_llama import load_gguf

    path = _write(tmp_path / "m.gguf", tiny_gguf[0])
    module, params, tok = load_gguf(path)
    assert module.config.num_hidden_layers == LAYERS and "lm_head" in params
    assert tok.encode("ab") == [tok.token_to_id("ab")]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # dequantising garbage blocks
@fuzz_settings(200)
@given(draw=st.data())
def test_gguf_reader(tmp_path, tiny_gguf, draw):
    from vau_jax.convert.gguf_llama import read_gguf
    from vau_jax.data.tokenizer import read_gguf_metadata

    valid, fields = tiny_gguf
    data = draw.draw(mutated_bytes(valid, fields=fields) | st.binary(max_size=64), label="file")
    path = _write(tmp_path / "m.gguf", data)
    expect_documented(lambda: read_gguf(path), path, allowed=ONLY_CHECKPOINT)
    expect_documented(lambda: read_gguf_metadata(path), path, allowed=ONLY_CHECKPOINT)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@fuzz_settings(60, deadline_ms=None)
@given(draw=st.data())
def test_gguf_full_load(tmp_path, tiny_gguf, draw):
    from vau_jax.convert.gguf_llama import load_gguf

    valid, fields = tiny_gguf
    data = draw.draw(mutated_bytes(valid, fields=fields, max_edits=1), label="file")
    path = _write(tmp_path / "m.gguf", data)
    expect_documented(lambda: load_gguf(path), path, allowed=ONLY_CHECKPOINT, seconds=30.0)


def _lie_u64(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<Q", value) + data[offset + 8 :]


def test_gguf_claiming_1e12_elements_fails_fast(tmp_path, tiny_gguf):
    """Counts and dims claiming 10^12 fail from the header, nothing allocated."""
    import gguf

    from vau_jax.convert.gguf_llama import read_gguf

    valid, _ = tiny_gguf
    path = _write(tmp_path / "ok.gguf", valid)
    reader = gguf.GGUFReader(path)
    base = reader.data.ctypes.data
    dims = reader.tensors[0].field.parts[3]  # token_embd dims (u64 each)
    dim_offset = dims.ctypes.data - base
    # parts of an array field: key length, key, type, item type, item count, items...
    types_count = reader.fields["tokenizer.ggml.token_type"].parts[4].ctypes.data - base
    tokens_count = reader.fields["tokenizer.ggml.tokens"].parts[4].ctypes.data - base
    del reader
    lies = {
        "tensor_count": _lie_u64(valid, 8, 10**12),
        "kv_count": _lie_u64(valid, 16, 10**12),
        "dims": _lie_u64(_lie_u64(valid, dim_offset, 10**6), dim_offset + 8, 10**6),
        "scalar_array_count": _lie_u64(valid, types_count, 10**12),
        "string_array_count": _lie_u64(valid, tokens_count, 10**12),
        # one key "a": an array of 10^12 uint8 and no items (the stock reader loops 10^12 times)
        "empty_array": b"GGUF"
        + struct.pack("<IQQQ", 3, 0, 1, 1)
        + b"a"
        + struct.pack("<IIQ", 9, 0, 10**12),
    }
    for name, data in lies.items():
        path = _write(tmp_path / f"{name}.gguf", data)
        err = expect_documented(
            lambda p=path: read_gguf(p), path, allowed=ONLY_CHECKPOINT, seconds=1.0
        )
        assert err is not None, name


# ----------------------------------------------------------------------------- torch pickles


def _torch_bytes() -> bytes:
    torch = pytest.importorskip("torch")
    import io

    buf = io.BytesIO()
    torch.save(
        {"model": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)}},
        buf,
    )
    return buf.getvalue()


@fuzz_settings(40)
@given(draw=st.data())
def test_torch_pickles(tmp_path, draw):
    from vau_jax.convert.torch_checkpoint import read_any

    valid = _torch_bytes()
    data = draw.draw(mutated_bytes(valid) | st.binary(max_size=100), label="file")
    path = _write(tmp_path / "model.pth", data)
    expect_documented(lambda: read_any(path), path, allowed=ONLY_CHECKPOINT)


@fuzz_settings(100)
@given(index=mutated_json({"weight_map": {"w": "a.bin", "b": "a.bin"}}) | st.binary(max_size=50))
def test_torch_shard_index(tmp_path, index):
    from vau_jax.convert.torch_checkpoint import INDEX, read_any

    _write(tmp_path / "a.bin", _torch_bytes())
    path = _write(tmp_path / INDEX, index)
    expect_documented(lambda: read_any(str(tmp_path)), str(tmp_path), allowed=ONLY_CHECKPOINT)
    assert os.path.isfile(path)


# ----------------------------------------------------------------------------- converted


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A tiny converted llama checkpoint folder (``save_converted``)."""

    from vau_jax.convert.checkpoint import save_converted

    cfg, module, params = _tiny_llama()
    dst = str(tmp_path_factory.mktemp("converted") / "ckpt")
    save_converted(dst, module, params, source="test")
    return dst


@pytest.fixture
def quiet_orbax():
    """Silence the "Task exception was never retrieved" logs of the futures orbax leaves
    behind when a metadata read fails (collected here, not at interpreter exit)."""
    import gc
    import logging

    logger = logging.getLogger("asyncio")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    gc.collect()
    logger.setLevel(level)


def _files(root: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def _copy(src: str, dst: str) -> str:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def test_valid_converted_loads(converted):
    from vau_jax.convert.checkpoint import load_converted

    module, params = load_converted(converted)
    assert module.config.vocab_size == 12 and params["lm_head"]["kernel"].shape == (8, 12)


@fuzz_settings(60, deadline_ms=None)
@given(draw=st.data())
def test_converted_checkpoint(tmp_path, converted, quiet_orbax, draw):
    from vau_jax.convert.checkpoint import load_converted

    root = _copy(converted, str(tmp_path / "ckpt"))
    rel = draw.draw(st.sampled_from(_files(root)), label="file")
    path = os.path.join(root, rel)
    with open(path, "rb") as f:
        valid = f.read()
    if rel.endswith(".json") or rel.endswith("_METADATA"):
        hostile = mutated_json(json.loads(valid)) | mutated_bytes(valid)
    else:
        hostile = mutated_bytes(valid) | st.binary(max_size=64)
    _write(path, draw.draw(hostile, label=rel))
    expect_documented(lambda: load_converted(root), root, allowed=ONLY_CHECKPOINT, seconds=30.0)


def _zarray_lie(root: str, key: str, shape: list[int]) -> None:
    """Rewrite the stored array metadata (inside the OCDBT store) to claim ``shape``."""
    import tensorstore as ts

    kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{root}/params/"}).result()
    meta = json.loads(kv.read(f"{key}/.zarray").result().value)
    meta["shape"] = meta["chunks"] = shape
    kv.write(f"{key}/.zarray", json.dumps(meta).encode()).result()


@pytest.mark.parametrize("lie", ["config_vocab", "config_layers", "stored_shape", "both"])
def test_converted_claiming_1e12_elements_fails_fast(tmp_path, converted, lie):
    from vau_jax.convert.checkpoint import load_converted

    root = _copy(converted, str(tmp_path / "ckpt"))
    cfg_path = os.path.join(root, "config.json")
    with open(cfg_path) as f:
        meta = json.load(f)
    if lie in ("config_vocab", "both"):
        meta["config"]["vocab_size"] = 10**12
    if lie == "config_layers":
        meta["config"]["num_hidden_layers"] = 10**12
    with open(cfg_path, "w") as f:
        json.dump(meta, f)
    if lie in ("stored_shape", "both"):
        _zarray_lie(root, "lm_head.kernel", [8, 10**12])
    err = expect_documented(
        lambda: load_converted(root), root, allowed=ONLY_CHECKPOINT, seconds=5.0
    )
    assert err is not None


def test_converted_config_nested_too_deep(tmp_path, converted):
    from vau_jax.convert.checkpoint import load_converted

    root = _copy(converted, str(tmp_path / "ckpt"))
    _write(os.path.join(root, "config.json"), DEEP_JSON)
    err = expect_documented(lambda: load_converted(root), root, allowed=ONLY_CHECKPOINT)
    assert err is not None
