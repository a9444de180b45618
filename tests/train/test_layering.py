"""Layers point one way (DESIGN §2): train/ knows no convert; models/ knows no data.

Checked twice: statically (every ``import`` statement of every module, function-local and
relative ones included) and at run time (importing the whole layer loads no forbidden module).
"""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = os.path.join(ROOT, "vau_jax")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _imports(path: str, package: str | None = None) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file (``from a import b``
    counts as ``a`` and ``a.b``: ``from vau_jax import convert`` imports ``vau_jax.convert``).
    ``package``: the file's package (for relative imports); by default from its path."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    if package is None:
        package = _module_name(path)
        if not path.endswith("__init__.py"):
            package = package.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def _violations(layer: str, forbidden: str) -> list[str]:
    bad = []
    for dirpath, _, files in os.walk(os.path.join(PKG, layer)):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                for line, mod in _imports(path):
                    if mod == forbidden or mod.startswith(forbidden + "."):
                        bad.append(f"{os.path.relpath(path, ROOT)}:{line} imports {mod}")
    return sorted(set(bad))


def _loaded_by_importing(layer: str, forbidden: str) -> list[str]:
    """Imports every module of ``vau_jax/<layer>`` in a fresh interpreter; the forbidden
    modules that got loaded."""
    mods = [
        _module_name(os.path.join(d, f))
        for d, _, files in os.walk(os.path.join(PKG, layer))
        for f in files
        if f.endswith(".py") and f != "__main__.py"
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {sorted(mods)!r}: importlib.import_module(m)\n"
        f"print('\\n'.join(m for m in sys.modules if m == {forbidden!r} "
        f"or m.startswith({forbidden + '.'!r})))\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_the_import_scanner_sees_every_form(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(
        "import vau_jax.convert.common\nfrom vau_jax import convert\n"
        "def f():\n    from ..convert.checkpoint import load_converted\n"
    )
    found = [m for _, m in _imports(str(path), package="vau_jax.train")]
    assert "vau_jax.convert.common" in found
    assert "vau_jax.convert" in found
    assert "vau_jax.convert.checkpoint" in found


def test_train_imports_nothing_from_convert():
    assert _violations("train", "vau_jax.convert") == []
    assert _loaded_by_importing("train", "vau_jax.convert") == []


def test_models_import_nothing_from_data():
    assert _violations("models", "vau_jax.data") == []
    assert _loaded_by_importing("models", "vau_jax.data") == []


def test_data_imports_no_models_and_no_methods():
    for forbidden in ("vau_jax.models", "vau_jax.methods", "vau_jax.train"):
        assert _violations("data", forbidden) == [], forbidden


def test_train_imports_no_methods():
    assert _violations("train", "vau_jax.methods") == []
