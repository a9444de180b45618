"""PyTorch pickles are read only through ``torch.load(weights_only=True)``, only in
``vau_jax/convert/torch_checkpoint.py``; nothing else in the package unpickles."""

from __future__ import annotations

import ast
import collections
import json
import os
import pickle

import numpy as np
import pytest

from vau_jax.convert import torch_checkpoint

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "..", "vau_jax")
#: ``module.function`` calls that unpickle (``np.load`` only with ``allow_pickle=True``).
UNPICKLERS = {
    "torch.load",
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "cPickle.load",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "torch.serialization.load",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _unpickling_calls(path: str) -> list[tuple[int, str, ast.Call]]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            pickle_np = name in ("np.load", "numpy.load") and any(
                k.arg == "allow_pickle" and getattr(k.value, "value", False) is True
                for k in node.keywords
            )
            if name in UNPICKLERS or pickle_np:
                out.append((node.lineno, name, node))
        elif isinstance(node, ast.ImportFrom) and node.module in ("pickle", "dill", "joblib"):
            out.append((node.lineno, f"from {node.module} import", node))
    return out


def test_no_other_unpickling_in_the_package():
    hits = []
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, PACKAGE)
                hits += [(rel, n, what, node) for n, what, node in _unpickling_calls(path)]
    assert [(r, w) for r, _, w, _ in hits] == [("convert/torch_checkpoint.py", "torch.load")], hits
    call = hits[0][3]
    weights_only = [k for k in call.keywords if k.arg == "weights_only"]
    assert weights_only and weights_only[0].value.value is True


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "x": _Evil()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        torch_checkpoint.read_state_dict(str(path))
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"w": 1}))  # not a torch zip file either
    with pytest.raises(ValueError, match="weights-only"):
        torch_checkpoint.read_state_dict(str(plain))


def test_shards_lavis_dicts_and_dtypes(tmp_path):
    torch = pytest.importorskip("torch")
    a = {"a": torch.arange(4, dtype=torch.bfloat16), "n": torch.tensor([1, 2])}
    b = collections.OrderedDict(b=torch.ones(2, 3, dtype=torch.float16))
    torch.save(a, tmp_path / "pytorch_model-1.bin")
    torch.save(b, tmp_path / "pytorch_model-2.bin")
    index = {
        "weight_map": {
            "a": "pytorch_model-1.bin",
            "n": "pytorch_model-1.bin",
            "b": "pytorch_model-2.bin",
        }
    }
    (tmp_path / torch_checkpoint.INDEX).write_text(json.dumps(index))
    sd = torch_checkpoint.read_any(str(tmp_path))
    assert sd["a"].dtype == np.float32 and sd["a"].tolist() == [0, 1, 2, 3]
    assert sd["b"].dtype == np.float32 and sd["n"].dtype == np.int64
    only = torch_checkpoint.read_state_dict(str(tmp_path), lambda k: k == "b")
    assert set(only) == {"b"}
    lavis = tmp_path / "lavis.pth"
    torch.save({"model": {"w": torch.ones(1)}, "config": {"lr": 1e-4}, "epoch": 2}, lavis)
    assert set(torch_checkpoint.read_state_dict(str(lavis))) == {"w"}
    torch.save({"a": torch.zeros(1)}, tmp_path / "pytorch_model-2.bin")
    with pytest.raises(ValueError, match="in both"):
        torch_checkpoint.read_state_dict(str(tmp_path))
