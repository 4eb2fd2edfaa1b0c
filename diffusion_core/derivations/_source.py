"""The code a derivation's box shows: exactly what its function needs from its module, ready to run.

``function_source(fn)`` reads the function's module with :mod:`ast` and keeps

* the imports, each cut down to the names that are needed,
* every top-level statement that binds (or changes) a name the function needs, its decorator's arguments
  included, and then every statement those statements need, transitively,
* the function itself,

in the module's order, followed by ``name.check()``. A name defined anywhere in the module (above or below
the function) is found, so the code runs in a fresh interpreter where the package is installed with the
``derivations`` extra. Names are resolved by Python's scoping rules: a function's parameters and locals do
not pull in module statements of the same name.
"""
from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field

WIDTH = 110          # the width imports are wrapped at
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass
class _Statement:
    node: ast.stmt
    first: int                  # first line (1-based), attached comments and decorators included
    last: int
    binds: set = field(default_factory=set)
    uses: set = field(default_factory=set)


def _own_names(nodes) -> set[str]:
    """Names bound in the scope of ``nodes`` (not in nested functions, classes or comprehensions)."""
    found, stack = set(), list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {a.asname or a.name.split(".")[0] for a in node.names}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        if isinstance(node, _SCOPES):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _free(node) -> set[str]:
    """Names ``node`` reads from the module scope."""
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) else set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        every = [a for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a]
        outside = [*getattr(node, "decorator_list", []), *args.defaults, *filter(None, args.kw_defaults),
                   *filter(None, [getattr(node, "returns", None), *(a.annotation for a in every)])]
        params = {a.arg for a in every}
        body = node.body if isinstance(node.body, list) else [node.body]
        declared = {n for s in ast.walk(node) if isinstance(s, ast.Global) for n in s.names}
        local = (params | _own_names(body)) - declared
        return _union(outside) | (_union(body) - local)
    if isinstance(node, ast.ClassDef):
        # the class body's own names are not visible inside its methods, so methods keep all their free names
        methods = [s for s in node.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
        rest = [s for s in node.body if s not in methods]
        return (_union([*node.decorator_list, *node.bases, *node.keywords]) | _union(methods)
                | (_union(rest) - _own_names(rest)))
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        inner = [g for gen in node.generators for g in (gen.iter, *gen.ifs)]
        elements = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        return _free(node.generators[0].iter) | ((_union(inner[1:]) | _union(elements)) - targets)
    return _union(ast.iter_child_nodes(node))


def _union(nodes) -> set[str]:
    out = set()
    for node in nodes:
        out |= _free(node)
    return out


def _changed(node: ast.stmt) -> set[str]:
    """Module names a statement binds or changes (``x = ...``, ``x.a = ...``, ``x[k] += ...``, ``x.add(...)``)."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return _own_names([node])
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return _own_names(targets) | {_base(t) for t in targets} - {None}
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return {_base(node.value.func)} - {None}
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return set()                                                # a string used as a comment
    raise ValueError(f"line {node.lineno}: a derivation module's top level may only hold imports, definitions, "
                     f"assignments and calls, not {type(node).__name__}")


def _base(node) -> str | None:
    """``x`` for ``x.a.b``, ``x[k]`` or ``x.f`` (a mutated or called object); None for a plain name."""
    if not isinstance(node, (ast.Attribute, ast.Subscript)):
        return None
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _statements(tree: ast.Module, lines: list[str]) -> list[_Statement]:
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]                                             # the module docstring
    out = []
    for node in body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        while first > 1 and lines[first - 2].lstrip().startswith("#"):
            first -= 1                                              # comments directly above belong to it
        uses = _free(node) | (_own_names([node.target]) if isinstance(node, ast.AugAssign) else set())
        out.append(_Statement(node, first, node.end_lineno, _changed(node), uses))
    return out


def _closure(statements: list[_Statement], target: _Statement) -> tuple[list[_Statement], set[str]]:
    """The statements ``target`` needs (transitively) and the names it and they need."""
    needed, kept, todo = set(), {id(target)}, set(target.uses)
    while todo:
        name = todo.pop()
        needed.add(name)
        for s in statements:
            if id(s) in kept or name not in s.binds:
                continue
            if isinstance(s.node, (ast.Import, ast.ImportFrom)):
                continue                                            # imports are cut to the needed names below
            kept.add(id(s))
            todo |= s.uses - needed
    return [s for s in statements if id(s) in kept or _is_import(s)], needed


def _is_import(s: _Statement) -> bool:
    return isinstance(s.node, (ast.Import, ast.ImportFrom))


def format_import(node: ast.Import | ast.ImportFrom, names: list[str] | None = None, width: int = WIDTH) -> str:
    """The import statement for ``names`` (default: all it imports), wrapped in brackets to ``width``."""
    aliases = [a for a in node.names if names is None or (a.asname or a.name.split(".")[0]) in names]
    words = [a.name + (f" as {a.asname}" if a.asname else "") for a in aliases]
    if isinstance(node, ast.Import):
        return "\n".join(f"import {w}" for w in words)
    head = f"from {'.' * node.level}{node.module or ''} import "
    if len(head) + len(", ".join(words)) <= width:
        return head + ", ".join(words)
    rows, row = [], ""
    for word in words:
        if row and len(head) + 1 + len(row) + len(word) + 2 > width:
            rows.append(row.rstrip())
            row = ""
        row += word + ", "
    rows.append(row[:-2] + ")")
    return head + "(" + ("\n" + " " * (len(head) + 1)).join(rows)


def _text(s: _Statement, lines: list[str], needed: set[str]) -> str | None:
    """The statement as shown: imports cut to the needed names (None when none is needed), others verbatim."""
    if not _is_import(s):
        return "\n".join(lines[s.first - 1:s.last])
    node = s.node
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return "\n".join(lines[s.first - 1:s.last])
    keep = [n for n in _own_names([node]) if n in needed]
    if not keep:
        return None
    if len(keep) == len(node.names):
        return "\n".join(lines[s.first - 1:s.last])
    return format_import(node, keep)


def function_source(fn) -> str:
    """Runnable code for the derivation function ``fn`` (see the module docstring), ending in ``fn.check()``."""
    module = inspect.getmodule(fn)
    module_text = inspect.getsource(module)
    lines = module_text.splitlines()
    try:
        statements = _statements(ast.parse(module_text), lines)
    except ValueError as exc:
        raise ValueError(f"{module.__name__}, {exc}") from None
    definitions = [s for s in statements if isinstance(s.node, ast.FunctionDef) and s.node.name == fn.__name__]
    if not definitions:
        raise LookupError(f"no top-level function {fn.__name__!r} in {fn.__module__}")
    kept, needed = _closure(statements, definitions[-1])
    out, previous = "", None
    for s in kept:
        text = _text(s, lines, needed)
        if text is None:
            continue
        if previous is not None:
            out += "\n" * (1 + _blank_lines(previous, s, statements, lines))
        out, previous = out + text, s
    return out + f"\n\n\n{fn.__name__}.check()\n"


def _blank_lines(before: _Statement, after: _Statement, statements: list[_Statement], lines: list[str]) -> int:
    """Blank lines between two shown statements: the module's own when nothing between them was left out."""
    blank = sum(1 for line in lines[before.last:after.first - 1] if not line.strip())
    if statements.index(after) == statements.index(before) + 1:
        return blank
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return 2 if isinstance(before.node, definitions) or isinstance(after.node, definitions) else min(blank, 1)
