"""The ``fastport._speedups`` switch, the twins' public surfaces and the compiled stubs."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import fastport._speedups

SPEEDUPS_DIR = Path(fastport._speedups.__file__).parent
REPO_ROOT = SPEEDUPS_DIR.parent.parent
MODULES = ("trie", "timerwheel", "fanout", "listener")


def test_compiled_twins_are_live_unless_disabled() -> None:
    expected = "python" if os.environ.get("FASTPORT_NO_EXTENSIONS") else "compiled"
    assert fastport._speedups.IMPLEMENTATION == expected
    assert fastport._speedups.NO_EXTENSIONS is bool(os.environ.get("FASTPORT_NO_EXTENSIONS"))


def test_env_var_selects_python_twins() -> None:
    code = (
        "import fastport._speedups as s; "
        "print(s.IMPLEMENTATION, s.NO_EXTENSIONS, s.TopicTrie.__module__, s.TimerWheel.__module__, "
        "s.Outbox.__module__, s.FrameListener.__module__)"
    )
    env = {**os.environ, "FASTPORT_NO_EXTENSIONS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert out == [
        "python",
        "True",
        "fastport._speedups.trie_py",
        "fastport._speedups.timerwheel_py",
        "fastport._speedups.fanout_py",
        "fastport._speedups.listener_py",
    ]


def test_switch_exports() -> None:
    assert sorted(fastport._speedups.__all__) == [
        "Flusher",
        "FrameListener",
        "IMPLEMENTATION",
        "Inflight",
        "MAX_DELAY_MS",
        "NO_EXTENSIONS",
        "Outbox",
        "TimerWheel",
        "TopicTrie",
        "fan_out",
    ]
    for name in fastport._speedups.__all__:
        assert hasattr(fastport._speedups, name)


@pytest.mark.compiled
@pytest.mark.parametrize("module", MODULES)
def test_twins_export_the_same_names(twins: tuple[SimpleNamespace, SimpleNamespace], module: str) -> None:
    python = importlib.import_module(f"fastport._speedups.{module}_py")
    compiled = importlib.import_module(f"fastport._speedups.{module}_c")
    assert compiled.__all__ == python.__all__
    assert compiled.__file__ is not None and not compiled.__file__.endswith(".py")
    for name in python.__all__:
        python_value = getattr(python, name)
        compiled_value = getattr(compiled, name)
        if isinstance(python_value, type):
            assert public_methods(compiled_value) == public_methods(python_value)
            for method in public_methods(python_value) - {"__len__"}:
                if not callable(getattr(python_value, method)):
                    continue  # a data attribute (``Inflight.attempts``): its name is compared above
                compiled_signature = inspect.signature(getattr(compiled_value, method))
                python_signature = inspect.signature(getattr(python_value, method))
                assert list(compiled_signature.parameters) == list(python_signature.parameters)
                if any(p.annotation is not p.empty for p in compiled_signature.parameters.values()):
                    # Annotated in the .pyx: the text must match too. (A cpdef override of picows's
                    # ``on_ws_frame`` carries its base's C types instead, so only its names are compared.)
                    assert str(compiled_signature) == str(python_signature)
        elif inspect.isfunction(python_value):
            assert list(inspect.signature(compiled_value).parameters) == list(
                inspect.signature(python_value).parameters
            )
        else:
            assert compiled_value == python_value


def public_methods(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")} | ({"__len__"} & set(vars(cls)))


@pytest.mark.parametrize("module", MODULES)
def test_stub_mirrors_the_python_twin(module: str) -> None:
    """Each ``_c.pyi`` has exactly the public classes and signatures of the ``_py`` twin."""
    python = importlib.import_module(f"fastport._speedups.{module}_py")
    stub = public_signatures(SPEEDUPS_DIR / f"{module}_c.pyi")
    assert stub == public_signatures(SPEEDUPS_DIR / f"{module}_py.py")
    assert sorted(stub) == sorted(name for name in python.__all__ if isinstance(getattr(python, name), type))


def public_signatures(path: Path) -> dict[str, dict[str, str]]:
    """Map each public class in a source file to its public methods' rendered signatures."""
    tree = ast.parse(path.read_text())
    return {
        node.name: {
            item.name: stub_signature(item)
            for item in node.body
            if isinstance(item, ast.FunctionDef)
            and (not item.name.startswith("_") or item.name in ("__init__", "__len__"))
        }
        for node in tree.body
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_")
    }


def stub_signature(function: ast.FunctionDef) -> str:
    """Render a stub function's signature the way ``inspect.signature`` shows the twin's."""
    args = function.args.args
    defaults = [None] * (len(args) - len(function.args.defaults)) + function.args.defaults
    params = []
    for arg, default in zip(args, defaults, strict=True):
        text = arg.arg if arg.annotation is None else f"{arg.arg}: {ast.unparse(arg.annotation)}"
        params.append(text if default is None else f"{text} = {ast.unparse(default)}")
    returns = "" if function.returns is None else f" -> {ast.unparse(function.returns)}"
    return f"({', '.join(params)}){returns}"


@pytest.mark.compiled
def test_stubtest(twins: tuple[SimpleNamespace, SimpleNamespace]) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "--allowlist",
            "fastport/_speedups/stubtest-allowlist.txt",
            *(f"fastport._speedups.{m}_c" for m in MODULES),
        ],
        cwd=REPO_ROOT,
        check=True,
        timeout=300,
    )
