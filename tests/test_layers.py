"""The package's layers import one way (``docs/architecture.md``): checked on the source, module by module.

Only imports that run count: those under ``if TYPE_CHECKING:`` are annotations, not dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastport

PACKAGE = Path(fastport.__file__).parent

#: Layer (a subpackage or module of ``fastport``) -> the modules and packages it must not import at run time.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "protocol": (
        "asyncio",
        "socket",
        "picows",
        "fastport.broker",
        "fastport.server",
        "fastport.engines",
        "fastport.client",
        "fastport._speedups",
        "fastport.config",
    ),
    "_speedups": ("asyncio", "fastport.broker", "fastport.server", "fastport.engines", "fastport.client"),
    "config": ("fastport.broker", "fastport.server", "fastport.engines", "fastport.client", "fastport._speedups"),
    "errors": ("fastport.",),
    "broker": ("picows", "redis", "sqlite3", "fastport.engines", "fastport.server", "fastport.client"),
    "engines": ("picows", "fastport.server", "fastport.client"),
    "client": ("fastport.broker", "fastport.server", "fastport.engines", "fastport._speedups"),
    # The sans-I/O core: bytes and times in, events and bytes out (the asyncio adapter is client/client.py).
    "client/protocol": ("asyncio", "picows", "socket", "time", "fastport.broker", "fastport.server"),
}


def _modules(layer: str) -> list[Path]:
    path = PACKAGE / layer
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports when it runs (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            assert isinstance(node, ast.If)
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.append(f"{base}.{node.module}" if node.module else base)
            else:
                assert node.module is not None
                names.append(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def _forbids(forbidden: str, name: str) -> bool:
    """Whether ``forbidden`` (a module, a package, or a prefix ending in ``.``) covers module ``name``."""
    if forbidden.endswith("."):
        return name.startswith(forbidden)
    return name == forbidden or name.startswith(forbidden + ".")


def _violations(layer: str) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in _modules(layer)
        for name in _runtime_imports(path)
        if any(_forbids(forbidden, name) for forbidden in FORBIDDEN[layer])
    ]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_below_it(layer: str) -> None:
    assert _violations(layer) == []


def test_the_checker_sees_a_forbidden_import() -> None:
    app = _runtime_imports(PACKAGE / "server" / "app.py")
    assert "fastport.engines.redis" in app and "picows" in app
    assert any(_forbids(forbidden, "fastport.engines.redis") for forbidden in FORBIDDEN["broker"])
    assert not _forbids("fastport.engines", "fastport.enginesque")
    # Annotations only: core.py imports nothing from the engines even under TYPE_CHECKING, journal.py its types.
    assert "fastport.broker.connection" not in _runtime_imports(PACKAGE / "broker" / "journal.py")


def test_broker_asks_no_optional_collaborator_whether_it_exists() -> None:
    """Persistence and the cluster link are null objects, called unconditionally (no ``store is not None``)."""
    for path in _modules("broker"):
        source = path.read_text(encoding="utf-8")
        for pattern in ("store is not None", "engine is not None", "store is None", "engine is None"):
            assert pattern not in source, f"{path.name}: {pattern}"
