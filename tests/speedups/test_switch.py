"""The ``fastport._speedups`` switch, the twins' public surfaces and the compiled stubs."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import fastport._speedups

if TYPE_CHECKING:
    from speedups.conftest import Twin

SPEEDUPS_DIR = Path(fastport._speedups.__file__).parent
REPO_ROOT = SPEEDUPS_DIR.parent.parent
MODULES = ("trie", "timerwheel", "outbox", "fanout", "listener")


#: Each name the switch exports from a twin, and the module whose twin it comes from.
EXPORTS = {
    "TopicTrie": "trie",
    "MAX_DELAY_MS": "timerwheel",
    "TimerWheel": "timerwheel",
    "Flusher": "outbox",
    "Outbox": "outbox",
    "Arm": "fanout",
    "FanOutConnection": "fanout",
    "FanOutMessage": "fanout",
    "FanOutSink": "fanout",
    "FanOutTarget": "fanout",
    "Inflight": "fanout",
    "fan_out": "fanout",
    "send_now": "fanout",
    "track": "fanout",
    "FrameListener": "listener",
}

#: Types only the reference twin defines; the compiled twin re-exports them.
SHARED = {"Arm", "FanOutConnection", "FanOutMessage", "FanOutSink", "FanOutTarget"}

#: Run in a fresh interpreter: make the compiled twin of sys.argv[1] fail to import the way
#: sys.argv[2] says, import the switch, and print what it chose and what it warned, as JSON.
PROBE = """
import importlib.machinery
import json
import sys
import warnings

module, failure = sys.argv[1], sys.argv[2]
name = f"fastport._speedups.{module}_c"
if failure == "missing":
    sys.modules[name] = None  # the import system then raises ImportError, as for a module never built
elif failure == "abi":

    class AbiMismatch:
        # Fails the way Cython's import-time check does when a cimported type changed size (picows upgraded).
        def find_spec(self, fullname, path, target=None):
            return importlib.machinery.ModuleSpec(fullname, self) if fullname == name else None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise ValueError("picows.picows.WSListener size changed, may indicate binary incompatibility")

    sys.meta_path.insert(0, AbiMismatch())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastport._speedups as s
twins = {key: mod for key, mod in sys.modules.items() if key.startswith("fastport._speedups.") and mod is not None}
exported = {
    key: sorted(m for m, mod in twins.items() if key in mod.__all__ and getattr(mod, key) is getattr(s, key))
    for key in s.__all__
}
print(json.dumps({
    "implementation": s.IMPLEMENTATION,
    "implementations": list(s.IMPLEMENTATIONS.items()),
    "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    "exported": exported,
}))
"""


def probe(module: str, failure: str) -> dict[str, Any]:
    """Import the switch in a subprocess with ``module``'s compiled twin failing (or not: ``"none"``)."""
    env = {key: value for key, value in os.environ.items() if key != "FASTPORT_NO_EXTENSIONS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module, failure],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_compiled_twins_are_live_unless_disabled() -> None:
    expected = "python" if os.environ.get("FASTPORT_NO_EXTENSIONS") else "compiled"
    assert expected == fastport._speedups.IMPLEMENTATION
    assert list(fastport._speedups.IMPLEMENTATIONS.items()) == [(module, expected) for module in MODULES]
    assert fastport._speedups.NO_EXTENSIONS is bool(os.environ.get("FASTPORT_NO_EXTENSIONS"))


def test_implementations_is_read_only() -> None:
    with pytest.raises(TypeError):
        fastport._speedups.IMPLEMENTATIONS["trie"] = "python"  # type: ignore[index]  # read-only: the TypeError


def test_exports_come_from_the_twin_each_module_runs() -> None:
    suffix = {"compiled": "c", "python": "py"}
    for name, module in EXPORTS.items():
        twin = importlib.import_module(
            f"fastport._speedups.{module}_{suffix[fastport._speedups.IMPLEMENTATIONS[module]]}"
        )
        assert getattr(fastport._speedups, name) is getattr(twin, name), name


def test_env_var_selects_python_twins() -> None:
    code = (
        "import fastport._speedups as s; "
        "print(s.IMPLEMENTATION, s.NO_EXTENSIONS, *s.IMPLEMENTATIONS.values(), s.TopicTrie.__module__, "
        "s.TimerWheel.__module__, s.Outbox.__module__, s.fan_out.__module__, s.FrameListener.__module__)"
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
        *["python"] * len(MODULES),
        "fastport._speedups.trie_py",
        "fastport._speedups.timerwheel_py",
        "fastport._speedups.outbox_py",
        "fastport._speedups.fanout_py",
        "fastport._speedups.listener_py",
    ]


@pytest.mark.compiled
def test_probe_sees_every_twin_compiled(twins: tuple[Twin, Twin]) -> None:
    result = probe("", "none")
    assert result["implementation"] == "compiled"
    assert result["implementations"] == [[module, "compiled"] for module in MODULES]
    assert result["warnings"] == []


@pytest.mark.compiled
@pytest.mark.parametrize("module", MODULES)
def test_a_missing_compiled_twin_falls_back_alone(twins: tuple[Twin, Twin], module: str) -> None:
    result = probe(module, "missing")
    assert result["implementation"] == "mixed"
    assert result["implementations"] == [[m, "python" if m == module else "compiled"] for m in MODULES]
    [(category, message)] = result["warnings"]
    assert category == "RuntimeWarning"
    assert message.startswith(f"fastport._speedups.{module}: compiled twin unavailable, using pure Python")
    for name, owner in EXPORTS.items():
        twin = f"fastport._speedups.{owner}_{'py' if owner == module else 'c'}"
        assert twin in result["exported"][name], name
        if name not in SHARED:
            assert result["exported"][name] == [twin], name


@pytest.mark.compiled
def test_a_picows_abi_mismatch_leaves_the_other_modules_compiled(
    twins: tuple[Twin, Twin],
) -> None:
    result = probe("listener", "abi")
    assert result["implementation"] == "mixed"
    assert result["implementations"] == [[m, "python" if m == "listener" else "compiled"] for m in MODULES]
    [(category, message)] = result["warnings"]
    assert category == "RuntimeWarning"
    assert message.startswith("fastport._speedups.listener: compiled twin unavailable")
    assert "binary incompatibility" in message
    assert result["exported"]["FrameListener"] == ["fastport._speedups.listener_py"]
    assert result["exported"]["TopicTrie"] == ["fastport._speedups.trie_c"]
    assert result["exported"]["TimerWheel"] == ["fastport._speedups.timerwheel_c"]
    assert result["exported"]["Outbox"] == ["fastport._speedups.outbox_c"]
    assert result["exported"]["fan_out"] == ["fastport._speedups.fanout_c"]


def test_switch_exports() -> None:
    assert sorted(fastport._speedups.__all__) == sorted(
        ["IMPLEMENTATION", "IMPLEMENTATIONS", "NO_EXTENSIONS", *EXPORTS]
    )
    for name in fastport._speedups.__all__:
        assert hasattr(fastport._speedups, name)


@pytest.mark.compiled
@pytest.mark.parametrize("module", MODULES)
def test_twins_export_the_same_names(twins: tuple[Twin, Twin], module: str) -> None:
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
    """Each ``_c.pyi`` has exactly the public classes, functions and signatures of the ``_py`` twin.

    Names the stub re-exports from the ``_py`` twin (fan-out's Protocols and ``Arm``: types with no
    compiled form) are the twin's own, so only their presence is checked.
    """
    python = importlib.import_module(f"fastport._speedups.{module}_py")
    stub_path = SPEEDUPS_DIR / f"{module}_c.pyi"
    shared = reexports(stub_path, f"fastport._speedups.{module}_py")
    stub = public_api(stub_path)
    reference = public_api(SPEEDUPS_DIR / f"{module}_py.py")
    assert stub == {name: api for name, api in reference.items() if name not in shared}
    assert shared <= set(python.__all__)
    defined = {name for name in python.__all__ if callable(getattr(python, name))}  # classes and functions
    assert sorted(stub) == sorted(defined - shared)


def reexports(path: Path, source: str) -> set[str]:
    """Names a stub imports from ``source`` under their own name (``from m import X as X``)."""
    tree = ast.parse(path.read_text())
    return {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == source
        for alias in node.names
        if alias.asname == alias.name
    }


def public_api(path: Path) -> dict[str, dict[str, str] | str]:
    """Map each public class of a source file to its public methods' rendered signatures, each function to its own."""
    tree = ast.parse(path.read_text())
    api: dict[str, dict[str, str] | str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            api[node.name] = stub_signature(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            api[node.name] = {
                item.name: stub_signature(item)
                for item in node.body
                if isinstance(item, ast.FunctionDef)
                and (not item.name.startswith("_") or item.name in ("__init__", "__len__"))
            }
    return api


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
def test_stubtest(twins: tuple[Twin, Twin]) -> None:
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
