"""docs/client.md documents the client's whole public surface, and nothing that is not there.

Every name exported by ``fastport`` and ``fastport.client`` appears in it as `` `Name` ``. The ``## Reference``
section has one ``### `Name` `` subsection per class below, and each public method, property, attribute, field
or enum member of that class is the first cell of a row of its table (``| `client.emit(topic, ...)` | ... |``,
``| `topic` | ... |``). A documented name that no longer exists fails too, so the page cannot go stale. The
constructor's arguments are the rows of the ``## Constructing`` table.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import inspect
import re
from pathlib import Path

import pytest

import fastport
import fastport.client
from fastport.client import (
    Client,
    ClientProtocol,
    ClientStats,
    ConnectionState,
    EnvelopeCipher,
    Message,
    PublishResult,
    ReconnectPolicy,
    Sealed,
    Subscription,
)

CLIENT_MD = Path(__file__).resolve().parent.parent / "docs" / "client.md"
REFERENCED: tuple[type, ...] = (
    Client,
    Subscription,
    Message,
    PublishResult,
    ClientStats,
    ConnectionState,
    ReconnectPolicy,
    EnvelopeCipher,
    Sealed,
    ClientProtocol,
)
#: A row's first-cell span: optional ``await``, optional ``instance.``, then the name (``client.emit(topic)`` -> emit).
_ROW_NAME = re.compile(r"^(?:await\s+)?(?:[a-z_]+\.)?([A-Za-z_]\w*)")
_SPAN = re.compile(r"`([^`\n]+)`")


def _text() -> str:
    return CLIENT_MD.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section, up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/client.md has no '## {heading}' section"
    return match.group(1)


def _row_names(body: str) -> list[str]:
    """The names in the first cell of every table row of ``body`` (header and rule rows skipped)."""
    names: list[str] = []
    for line in body.splitlines():
        if not line.startswith("|") or re.fullmatch(r"\|[-| :]+\|?", line):
            continue
        first_cell = line.split("|")[1]
        for span in _SPAN.findall(first_cell):
            match = _ROW_NAME.match(span)
            if match:
                names.append(match.group(1))
    return names


def _reference() -> dict[str, list[str]]:
    """``### `Name` `` subsection of ``## Reference`` -> the names its table rows document."""
    subsections = re.split(r"^### ", _section(_text(), "Reference"), flags=re.MULTILINE)[1:]
    documented: dict[str, list[str]] = {}
    for subsection in subsections:
        heading, _, body = subsection.partition("\n")
        title = _SPAN.search(heading)
        assert title, f"a Reference heading names no `class`: {heading!r}"
        documented[title.group(1)] = _row_names(body)
    return documented


def _client() -> Client:
    """A client that is never started: its public instance attributes, without a broker."""
    return Client("ws://127.0.0.1:9", "s", "p", base64.b64encode(bytes(32)).decode())


def _public(cls: type) -> set[str]:
    """The public names of ``cls``: methods, properties, dataclass fields, slots, enum members."""
    if issubclass(cls, enum.Enum):
        return set(cls.__members__)
    names = {name for name in dir(cls) if not name.startswith("_")}
    if dataclasses.is_dataclass(cls):
        names |= {field.name for field in dataclasses.fields(cls)}
    if cls is Client:
        names |= {name for name in vars(_client()) if not name.startswith("_")}
    return names


@pytest.mark.parametrize("name", sorted({*fastport.__all__, *fastport.client.__all__}), ids=lambda name: f"{name}")
def test_every_exported_name_is_in_client_md(name: str) -> None:
    assert f"`{name}`" in _text(), f"docs/client.md does not mention `{name}` (exported by fastport)"


def test_every_exported_name_resolves() -> None:
    """What the page documents as importable from ``fastport`` is importable from it."""
    for name in fastport.__all__:
        assert getattr(fastport, name) is not None
    for name in fastport.client.__all__:
        assert getattr(fastport.client, name) is not None


@pytest.mark.parametrize("cls", REFERENCED, ids=lambda cls: f"{cls.__name__}")
def test_reference_documents_every_public_member(cls: type) -> None:
    reference = _reference()
    assert cls.__name__ in reference, f"docs/client.md ## Reference has no '### `{cls.__name__}`' subsection"
    documented = reference[cls.__name__]
    actual = _public(cls)
    assert len(documented) == len(set(documented)), f"{cls.__name__}: a row repeats a name: {sorted(documented)}"
    missing, stale = sorted(actual - set(documented)), sorted(set(documented) - actual)
    assert not missing and not stale, f"{cls.__name__}: undocumented {missing}; documented but gone {stale}"


def test_reference_has_no_subsection_for_an_unchecked_class() -> None:
    """Each ``### `Name` `` of the Reference is checked here (a new one joins ``REFERENCED``)."""
    assert set(_reference()) == {cls.__name__ for cls in REFERENCED}


def test_constructing_table_lists_every_client_argument() -> None:
    parameters = list(inspect.signature(Client.__init__).parameters)[1:]  # without self
    documented = _row_names(_section(_text(), "Constructing"))
    assert sorted(documented) == sorted(parameters), "docs/client.md ## Constructing and Client(...) differ"
