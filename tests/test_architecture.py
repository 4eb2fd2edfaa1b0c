"""The library's shape, read from its source with ``ast``: imports go down the layers (never up, never in a
cycle), and no function is longer than the project's limit."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffusion_core"
# Lowest first. A module may import its own layer and those below; a subpackage (nn, train, derivations) is one
# entry, its modules importing each other freely but never in a cycle.
LAYERS = [
    {"_version", "errors", "_validation", "_progress", "_sync", "cpu_threads"},
    {"schedule"},
    {"paths", "targets"},
    {"grids", "weighting", "time_sampling", "forward", "mixture"},
    {"reverse"},
    {"diffusion"},
    {"denoiser"},
    {"guidance", "sampling", "step_grid"},
    {"samplers", "likelihood"},
    {"ddpm_samplers", "vlb"},
    {"losses", "metrics", "distillation", "reflow"},
    {"nn"},
    {"train"},
    {"evaluation"},
    {"_cli_sample", "_cli_eval", "cli", "examples"},
    {"__init__"},
    {"derivations"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
MAX_FUNCTION_LINES = 60  # statements after the docstring


def _modules() -> dict[str, Path]:
    """Dotted name (without the package) -> file, e.g. 'train.trainer', 'samplers', '__init__'."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)] = path
    return out


def _runtime_imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The package modules that ``module`` imports at run time (function-level imports included; ``if
    TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    package = module.split(".")[:-1] if not path.name == "__init__.py" else module.split(".")
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            names = [a.name[len("diffusion_core."):] for a in node.names if a.name.startswith("diffusion_core.")]
        elif node.level:
            base = package[: len(package) - node.level + 1] if node.level > 1 else package
            stem = ".".join([*base, node.module] if node.module else base)
            names = [f"{stem}.{a.name}".strip(".") for a in node.names]
            if node.module or not any((n or "__init__") in known for n in names):  # `from . import sub` is sub
                names.append(stem)
        elif node.module and node.module.startswith("diffusion_core"):
            stem = node.module[len("diffusion_core"):].strip(".")
            names = [f"{stem}.{a.name}".strip(".") for a in node.names] + [stem]
        else:
            continue
        found.update(n if n else "__init__" for n in names if (n if n else "__init__") in known)
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules) | {"__init__"}
    return {m: _runtime_imports(p, m, known) for m, p in modules.items()}


def _layer(module: str) -> int:
    return RANK[module.split(".")[0]] if module.split(".")[0] in RANK else RANK[module]


def test_every_module_has_a_layer():
    missing = sorted(m for m in _modules() if m.split(".")[0] not in RANK)
    assert not missing, f"add these modules to LAYERS: {missing}"


def test_imports_go_down_the_layers():
    upward = [f"{m} imports {d}" for m, deps in _graph().items() for d in deps if _layer(d) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph, state, cycle = _graph(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                cycle.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycle, "\n".join(cycle)


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The two checks above can fail: a fake package with a -> b -> a, and a low layer importing a high one."""
    pkg = tmp_path / "diffusion_core"
    pkg.mkdir()
    (pkg / "errors.py").write_text("from .samplers import x\n")
    (pkg / "samplers.py").write_text("from .errors import y\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="errors imports samplers"):
        test_imports_go_down_the_layers()
    with pytest.raises(AssertionError, match="errors -> samplers -> errors|samplers -> errors -> samplers"):
        test_no_import_cycle()


def test_no_function_is_longer_than_the_limit():
    long = []
    for path in PACKAGE.rglob("*.py"):
        if "derivations" in path.relative_to(PACKAGE).parts:
            continue  # the site's checked derivations are lists of steps, not library code
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
                first = body[1] if doc and len(body) > 1 else body[0]
                lines = node.end_lineno - first.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)
