"""Find every derivation in ``diffusion_core/derivations`` (page modules: names not starting with ``_``)."""
from __future__ import annotations

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def page_modules(root: Path = ROOT) -> list[str]:
    """Dotted module names such as ``background.kl``, sorted."""
    names = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        if any(part.startswith("_") for part in rel.parts):
            continue
        names.append(".".join(rel.parts))
    return names


def discover(root: Path = ROOT) -> dict:
    """``{"background.kl:nonnegativity": DerivationSpec, ...}`` in file order."""
    from ._framework import DerivationSpec

    found = {}
    for module_name in page_modules(root):
        module = importlib.import_module(f"{__package__}.{module_name}")
        for value in vars(module).values():
            if isinstance(value, DerivationSpec) and value.fn.__module__ == module.__name__:
                found[value.ref] = value
    return found
