"""The package's shape: modules talk through public names, no import cycles, and importing has no side effects."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vaedemo"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``from . import`` statement names."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(modules: dict[str, Path]) -> dict[str, list[tuple[str, str, int]]]:
    """module → [(imported vaedemo module, name imported from it or "", line)], every import in the file
    (also those inside functions: a lazy import hides a cycle, it does not remove it)."""
    found: dict[str, list[tuple[str, str, int]]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges += [(a.name, "", node.lineno) for a in node.names if a.name.startswith("vaedemo")]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, is_package, node)
                if not target.startswith("vaedemo"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:  # `from . import models`: the module itself
                        edges.append((sub, "", node.lineno))
                    else:
                        edges.append((target, alias.name, node.lineno))
        found[name] = edges
    return found


def test_no_module_imports_another_modules_private_name():
    modules = _modules()
    offences = []
    for name, edges in _imports(modules).items():
        for target, imported, line in edges:
            if imported.startswith("_") and not imported.startswith("__") and target != name:
                offences.append(f"{name}:{line} imports {target}.{imported}")
    for name, path in modules.items():  # module._private attribute reads, e.g. `service._encode(...)`
        tree = ast.parse(path.read_text())
        aliases = {
            a.asname or a.name.split(".")[-1]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
            for a in n.names
            if (n.level or (n.module or "").startswith("vaedemo"))
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and f"{name.rsplit('.', 1)[0]}.{node.value.id}" in modules | {f"vaedemo.{node.value.id}": 0}
            ):
                offences.append(f"{name}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not offences, "\n".join(offences)


def test_there_is_no_import_cycle():
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, edges in _imports(modules).items():
        for target, _, _ in edges:
            while target and target not in modules:  # a name inside a module → that module
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):  # a package's own __init__
                graph[name].add(target)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" → ".join(c) for c in cycles)


def test_the_layers_point_one_way():
    """The UI does not reach past the backend into torch; the backend and below never import gradio."""
    modules = _modules()
    for name, path in modules.items():
        source = path.read_text()
        if name.startswith("vaedemo.ui"):
            assert "import torch" not in source and "from torch" not in source, name
        else:
            assert "import gradio" not in source and "from gradio" not in source, name


def test_importing_the_package_changes_no_process_wide_setting():
    """Defect: importing the UI set os.environ, and importing vaedemo.images changed Pillow's limits for the
    whole process. Both now happen in ui.setup(), when the app starts."""
    code = (
        "import os, warnings\n"
        "from PIL import Image, ImageFile\n"
        "bomb = lambda: any(f[2] is Image.DecompressionBombWarning and f[0] == 'error' for f in warnings.filters)\n"
        "before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, bomb())\n"
        "os.environ.pop('GRADIO_ANALYTICS_ENABLED', None)\n"
        "import vaedemo, vaedemo.images, vaedemo.inference, vaedemo.ui\n"
        "after = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, bomb())\n"
        "print(before == after, 'GRADIO_ANALYTICS_ENABLED' in os.environ)\n"
        "vaedemo.ui.setup()\n"
        "print(Image.MAX_IMAGE_PIXELS, os.environ['GRADIO_ANALYTICS_ENABLED'], bomb())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == "True False"
    assert second == "50000000 False True"


def test_web_numbers_get_one_sentence_whatever_their_size():
    import pytest

    from vaedemo.validation import number, quote, whole

    for huge in (10**400, -(10**400), "9" * 400):
        with pytest.raises(ValueError, match="The seed must be a (whole |finite )?number") as info:
            whole(huge, "The seed", 0, 2**31 - 1)
        assert len(str(info.value)) < 200  # the value is quoted short, never echoed whole
        with pytest.raises(ValueError, match="The learning rate must be a (finite )?number") as info:
            number(huge, "The learning rate", 0.0, 1.0)
        assert len(str(info.value)) < 200
    assert whole("16", "n", 0, 20) == 16 and whole(16.0, "n", 0, 20) == 16
    assert len(quote("x" * 5_000_000)) <= 40
