"""The house rules of the package (docs/engine.md, "Architecture"), checked on the code.

* the import-linter contracts in pyproject.toml (the layer rule; torch, segment-anything
  and sam2 only in the engine; napari and Qt only in _qt) hold;
* no module imports itself through a circle of imports;
* internal imports are at module level (only torch, segment-anything, sam2, napari and Qt
  are imported lazily, inside functions);
* every public path the docs, the README and the notebooks name still imports.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "napari_segany"


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.exists() else (shutil.which("lint-imports") or "")


def test_import_linter_contracts_hold():
    exe = _lint_imports()
    if not exe:
        pytest.skip("import-linter is not installed (pip install 'napari-segany[testing]')")
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "3 kept, 0 broken" in run.stdout


def _import_graph() -> dict[str, set[str]]:
    """module -> internal modules it imports (any import statement, at any depth)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        name = ".".join(parts)
        base = parts if is_pkg else parts[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = (".".join(base[: len(base) - node.level + 1] + ([node.module] if
                       node.module else [])) if node.level else node.module or "")
                if mod.startswith("napari_segany"):
                    if node.module:  # "from . import x" imports x, not the package's face
                        deps.add(mod)
                    deps.update(f"{mod}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("napari_segany"))
        graph[name] = deps
    modules = set(graph)
    return {m: {d for d in deps if d in modules and d != m} for m, deps in graph.items()}


def test_no_import_circles():
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    assert not circles, f"modules that import each other in a circle: {circles}"


#: External modules that may be imported inside functions (heavy, or only for the GUI).
LAZY_OK = re.compile(r"^(torch|torchvision|segment_anything|sam2|napari|qtpy|magicgui|PyQt5|"
                     r"PyQt6|PySide2|PySide6|triton|pydicom|highdicom)\b")


def test_internal_imports_are_at_module_level():
    late = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (
                        node.level or (node.module or "").startswith("napari_segany")):
                    late.append(f"{path.relative_to(SRC)}:{node.lineno}")
                elif isinstance(node, ast.Import) and any(
                        a.name.startswith("napari_segany") for a in node.names):
                    late.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not late, f"internal imports inside functions: {late}"


def _named_paths() -> set[str]:
    """Every ``napari_segany.a.b`` and ``from napari_segany.x import y`` in docs and notebooks."""
    texts = [p.read_text() for p in (ROOT / "docs").glob("*.md")]
    texts.append((ROOT / "README.md").read_text())
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        texts += ["".join(c["source"]) for c in cells]
    found: set[str] = set()
    for text in texts:
        found.update(re.findall(r"napari_segany(?:\.[A-Za-z_]\w*)+", text))
        for mod, grouped, names in re.findall(
                r"from (napari_segany(?:\.\w+)*) import (?:\(([^)]*)\)|([\w, ]+))", text):
            found.update(f"{mod}.{n.strip()}" for n in (grouped or names).split(",")
                         if n.strip().isidentifier())
    return found - NOT_PATHS


#: Dotted names in the docs that are not import paths.
NOT_PATHS = {"napari_segany.models"}  # the entry-point group of model plugins


def _resolve(path: str) -> object:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(path)


def test_every_public_path_in_the_docs_imports():
    paths = _named_paths()
    assert len(paths) > 30, sorted(paths)  # the scan found the docs' names
    broken = []
    for p in sorted(paths):
        try:
            _resolve(p)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{p}: {exc}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("old, new", [
    ("napari_segany.labels.LabelsStore", "napari_segany.storage.LabelsStore"),
    ("napari_segany.labels.LabelsStoreError", "napari_segany.errors.LabelsStoreError"),
    ("napari_segany.cache.EmbeddingCache", "napari_segany.storage.EmbeddingCache"),
    ("napari_segany.cache.CacheMismatchError", "napari_segany.errors.CacheMismatchError"),
    ("napari_segany.propagate_sam2.propagate_sam2", "napari_segany.propagate.propagate_sam2"),
    ("napari_segany.prompts.PromptError", "napari_segany.errors.PromptError"),
    ("napari_segany.auto.Cancelled", "napari_segany.errors.Cancelled"),
    ("napari_segany.engine.weights.CheckpointError", "napari_segany.errors.CheckpointError"),
    ("napari_segany.cli.UsageError", "napari_segany.errors.UsageError"),
])
def test_old_import_paths_name_the_same_objects(old, new):
    assert _resolve(old) is _resolve(new)
