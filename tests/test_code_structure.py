"""The package's shape: small modules and functions, one door to Keras internals.

- no module over 450 lines, no function body over 80 lines (the docstring not counted);
- no module imports another module's underscore names;
- Keras private API (`keras.src`, underscore attributes of Keras objects) only in
  `keras_transfer/utils/model_graph.py`, whose every private name is pinned by
  `tests/utils/test_model_graph.py`.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_transfer"
FILES = sorted(PACKAGE.rglob("*.py"))
PRIVATE_API_MODULE = PACKAGE / "utils" / "model_graph.py"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _relative(path):
    return str(path.relative_to(PACKAGE.parent))


def _tree(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _body_lines(function):
    """Lines of a function without its docstring."""
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _names_defined_in_package():
    """Every name the package itself defines (functions, classes, attributes it assigns, keywords)."""
    names = set()
    for path in FILES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return names


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def foreign_private_uses(path, own_names):
    """(line, what) for each use of a private name the package does not define itself, and keras.src."""
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own_names:
            found.append((node.lineno, node.attr))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and node.args[1].value not in own_names
        ):
            found.append((node.lineno, node.args[1].value))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [(node.lineno, m) for m in modules if m.startswith(("keras.src", "keras_hub.src", "tf_keras"))]
    return found


def test_finds_the_package():
    assert len(FILES) > 50


@pytest.mark.parametrize("path", FILES, ids=_relative)
def test_module_and_function_size(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{_relative(path)} has {lines} lines (at most {MAX_MODULE_LINES}): split it"
    long = [
        f"{node.name} (line {node.lineno}): {_body_lines(node)} lines"
        for node in ast.walk(_tree(path))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_relative(path)}: functions over {MAX_FUNCTION_LINES} lines without docstring: {long}"


@pytest.mark.parametrize("path", FILES, ids=_relative)
def test_no_import_of_underscore_names(path):
    bad = [
        f"line {node.lineno}: from {node.module} import {alias.name}"
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_transfer")
        for alias in node.names
        if _private(alias.name)
    ]
    assert not bad, f"{_relative(path)} imports another module's private names: {bad}"


def test_keras_private_api_only_in_model_graph():
    own = _names_defined_in_package()
    offenders = {
        _relative(path): uses
        for path in FILES
        if path != PRIVATE_API_MODULE and (uses := foreign_private_uses(path, own))
    }
    assert not offenders, (
        f"Keras private API outside {_relative(PRIVATE_API_MODULE)} (add a public function there): {offenders}"
    )
    assert foreign_private_uses(PRIVATE_API_MODULE, own), "the checker no longer sees model_graph's private names"
