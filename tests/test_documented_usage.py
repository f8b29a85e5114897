"""Every code example of README.md and docs/*.md runs, exactly as written, against a real broker.

Each fenced block is ``python``, ``sh``/``bash`` (code: run here) or ``text`` (diagrams, pseudo-code, layouts: not
run); any other info string, or none, fails. A code block that cannot run here is in ``EXEMPT``, with the reason.

Per document, the test starts ``python -m fastport serve`` with no flags, so on 127.0.0.1:3000 as the README says,
with ``HOME`` in a temporary directory (so ``~/.local/share/fastport/admin-token`` is the broker's) and
``XDG_DATA_HOME``, ``ADMIN_USER``/``ADMIN_PASS`` and other ``FASTPORT_*`` variables unset
(``FASTPORT_NO_EXTENSIONS`` passes through). If that port is taken, the test is skipped: the examples name it.
Then, in document order:

* a ``python`` block runs, unchanged, as a file in a fresh interpreter; it must exit 0 with nothing on stderr, and
  when it prints, its output must show what ``PRINTS`` says the page promises;
* an ``sh`` block runs command by command in bash (variables carry over, as in one terminal). A comment line right
  under a command is the output it shows: ``<...>`` stands for anything, ``<N hex chars>`` for that many, ``...``
  for the rest. ``fastport sub`` runs until stopped, so it is started in the background and, once it reports its
  subscription, the next commands run; each later ``fastport pub`` must answer ``delivered to <n>`` for the
  ``n`` subscribers running, and each of them must print ``<topic> <message>``; they are stopped by PID at the end;
* README.md's inline commands (`` `fastport session create ...` ``, `` `fastport keygen` `` ...) run too, at their
  place in the text, with ``FASTPORT_URL``, ``FASTPORT_SESSION`` and ``FASTPORT_PASSWORD`` set to the tour's
  broker, session and password as its prose says, and ``FASTPORT_KEY`` to what `` `fastport keygen` `` printed.
  The prose offers `` `fastport session create demo ...` `` as the equivalent of the ``curl`` call above it, so it
  runs after dropping that session with the prose's `` `fastport session drop ... --secret-key KEY` ``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from fastport.cli import build_parser
from fastport.protocol.topics import filter_matches

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", *(f"docs/{path.name}" for path in sorted((ROOT / "docs").glob("*.md"))))
HOST, PORT = "127.0.0.1", 3000
CODE = frozenset({"python", "sh", "bash"})
NOT_CODE = frozenset({"text"})
#: Every wait: a broker to listen, a command or a block to finish, a subscriber to print.
TIMEOUT_S = 20.0

#: (document, the block's text) -> why the test does not run it.
EXEMPT: dict[tuple[str, str], str] = {
    ("README.md", "pip install . && fastport serve"): (
        "pip install is what CI runs before the tests, which must not download or reinstall anything; "
        "`fastport serve` is the broker every run here starts (python -m fastport serve, no flags)"
    ),
    ("README.md", 'pip install -e ".[test]" && pytest'): (
        "CI's own command: the tests must not download packages, and a test cannot run the suite it belongs to"
    ),
}

#: (document, a line of a python block) -> patterns its output must show, one per promised line.
PRINTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("README.md", 'print("delivered to", result.delivered_to, "acked:", result.acked)'): (
        r"^got 21\.5 \d{13}$",
        r"^delivered to 1 acked: True$",
    ),
    ("docs/client.md", "print(result.delivered_to, result.acked)  # 1 True: sent to client, which acked it"): (
        r"^21\.5 \d{13}$",
        r"^1 True$",
        r"^alerts/smoke kitchen [0-9a-f-]{36} 0$",
    ),
}

#: What README.md's prose says its shell tour runs with: the broker, session and password of the tour.
TOUR_ENV = {"FASTPORT_URL": f"ws://{HOST}:{PORT}", "FASTPORT_SESSION": "demo", "FASTPORT_PASSWORD": "s3cret"}
#: Documents whose examples use the README's session: they run the README's `fastport session create` first.
USES_README_SESSION = frozenset({"docs/client.md"})

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_SPAN = re.compile(r"`([^`\n]+)`")
_COMMAND = re.compile(r"\bfastport (?:serve|session|keygen|pub|sub)\b|^export FASTPORT_")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: where it starts (its opening fence), its info string and its text."""

    doc: str
    line: int
    info: str
    source: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


@dataclass(frozen=True, slots=True)
class Span:
    """One inline command of the prose (`` `fastport keygen` ``) and its line."""

    doc: str
    line: int
    command: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def parse(doc: str) -> tuple[list[Block], list[Span]]:
    """The fenced blocks of ``doc`` and the inline commands of the prose outside them, in document order."""
    blocks: list[Block] = []
    spans: list[Span] = []
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    opening: re.Match[str] | None = None
    body: list[str] = []
    start = 0
    for number, line in enumerate(lines, 1):
        fence = _FENCE.match(line)
        if opening is None:
            if fence:
                opening, body, start = fence, [], number
            else:
                spans.extend(Span(doc, number, s) for s in _SPAN.findall(line) if _COMMAND.search(s))
        elif (
            fence
            and fence["fence"][0] == opening["fence"][0]
            and len(fence["fence"]) >= len(opening["fence"])
            and not fence["info"].strip()
        ):
            info = opening["info"].strip().split(" ")[0]
            blocks.append(Block(doc, start, info, "\n".join(body) + "\n"))
            opening = None
        else:
            body.append(line[min(len(opening["indent"]), len(line) - len(line.lstrip(" "))) :])
    assert opening is None, f"{doc}:{start}: a fenced block is never closed"
    return blocks, spans


def runnable(doc: str) -> list[Block]:
    blocks, _ = parse(doc)
    return [b for b in blocks if b.info in CODE and (b.doc, b.source.strip()) not in EXEMPT]


def inline_commands(doc: str) -> list[Span]:
    """The prose's commands but `` `fastport serve` ``, which is the broker every run starts."""
    return [span for span in parse(doc)[1] if span.command != "fastport serve"]


def promised(block: Block) -> tuple[str, ...]:
    matches = [patterns for (doc, line), patterns in PRINTS.items() if doc == block.doc and line in block.source]
    assert len(matches) <= 1, f"{block.where}: more than one PRINTS entry matches"
    return matches[0] if matches else ()


def output_pattern(shown: str) -> str:
    """The regular expression of an output line a page shows, placeholders and all."""
    pattern = []
    for part in re.split(r"(<[^<>]+>|\.\.\.)", shown):
        hex_chars = re.fullmatch(r"<(\d+) hex chars>", part)
        if part == "...":
            pattern.append(".*")
        elif hex_chars:
            pattern.append(f"[0-9a-f]{{{hex_chars[1]}}}")
        elif part.startswith("<") and part.endswith(">"):
            pattern.append(".+?")
        else:
            pattern.append(re.escape(part))
    return "".join(pattern)


def shell_commands(block: Block) -> list[tuple[str, str | None]]:
    """The commands of an ``sh`` block (continuation lines joined), each with the output line shown under it."""
    commands: list[tuple[str, str | None]] = []
    current: list[str] = []
    for line in block.source.splitlines():
        if not current and line.lstrip().startswith("#"):
            assert commands and commands[-1][1] is None, f"{block.where}: a comment that is not a command's output"
            commands[-1] = (commands[-1][0], line.lstrip()[1:].strip())
        elif current or line.strip():
            current.append(line)
            if not line.endswith("\\"):
                commands.append(("\n".join(current), None))
                current = []
    assert not current, f"{block.where}: the last command continues past the block"
    return commands


# ------------------------------------------------------------------------------------------- processes


def stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    """Stop ``process`` (by its PID) with ``sig``, then SIGKILL if it is still there after a bounded wait."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=10)


def wait_for(path: Path, text: str, process: subprocess.Popen[bytes], what: str) -> None:
    """Wait until ``text`` is in the file ``path`` that ``process`` writes; fail if it ends first or time runs out."""
    deadline = time.monotonic() + TIMEOUT_S
    while text not in path.read_text(encoding="utf-8", errors="replace"):
        if process.poll() is not None:
            output = path.read_text(encoding="utf-8", errors="replace")
            pytest.fail(f"{what} exited {process.returncode} before printing {text!r}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: no {text!r} within {TIMEOUT_S:g} s:\n{path.read_text(encoding='utf-8')}")
        time.sleep(0.02)


def base_env(home: Path) -> dict[str, str]:
    kept = {
        name: value
        for name, value in os.environ.items()
        if name not in {"XDG_DATA_HOME", "ADMIN_USER", "ADMIN_PASS"}
        and (not name.startswith("FASTPORT_") or name == "FASTPORT_NO_EXTENSIONS")
    }
    # The `fastport` of the docs is this interpreter's console script.
    path = os.pathsep.join([str(Path(sys.executable).parent), kept.get("PATH", os.defpath)])
    assert shutil.which("fastport", path=path), "no `fastport` command next to the interpreter: pip install -e ."
    return {**kept, "HOME": str(home), "PATH": path}


class Broker:
    """``python -m fastport serve`` on 127.0.0.1:3000 with its own HOME; stopped with SIGTERM (exit 0)."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.home.mkdir()
        self.env = base_env(self.home)
        self.log = root / "broker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, PORT))
            except OSError as exc:
                pytest.skip(f"{HOST}:{PORT} is in use ({exc.strerror}): the documented examples connect to that port")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fastport", "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.home,
            )
        try:
            wait_for(self.log, f"listening on {HOST}:{PORT}", self.process, "the broker")
        except BaseException:
            stop(self.process, signal.SIGKILL)
            if "address already in use" in self.log.read_text(encoding="utf-8").lower():
                pytest.skip(f"{HOST}:{PORT} was taken as the broker started: the documented examples connect to it")
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        assert self.process is not None
        status = stop(self.process, signal.SIGTERM)
        if kind is None:
            assert status == 0, f"the broker exited {status} on SIGTERM:\n{self.log.read_text(encoding='utf-8')}"


@dataclass
class Subscriber:
    """A running ``fastport sub``: its filter, output files and the lines it must have printed."""

    process: subprocess.Popen[bytes]
    topic: str
    stdout: Path
    stderr: Path
    where: str
    expected: list[str] = field(default_factory=list)


class Shell:
    """Runs documented commands one at a time in bash, carrying the variables each sets to the next."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.subscribers: list[Subscriber] = []
        #: sessionName -> the secretKey its createSession answered.
        self.secret_keys: dict[str, str] = {}
        self._runs = 0

    def run(self, command: str, where: str, shown: str | None = None) -> str:
        words = shlex.split(command, comments=True)
        self._runs += 1
        if words[:2] == ["fastport", "sub"]:
            self._subscribe(command, words, where)
            return ""
        env_file = self.cwd / f"env-{self._runs}"
        script = f"set -a\n{command}\nstatus=$?\nenv -0 > {shlex.quote(str(env_file))}\nexit $status\n"
        result = subprocess.run(
            ["bash", "-c", script],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, f"{where}: `{command}` exited {result.returncode}:\n{result.stderr}"
        entries = env_file.read_bytes().decode().split("\0")
        variables = dict(entry.split("=", 1) for entry in entries if "=" in entry)
        self.env = {name: value for name, value in variables.items() if name not in {"_", "SHLVL", "OLDPWD"}}
        output = result.stdout.strip()
        if shown is not None:
            assert re.fullmatch(output_pattern(shown), output, re.DOTALL), f"{where}: shows {shown!r}, got {output!r}"
        self._check(words, output, where)
        return output

    def _check(self, words: list[str], output: str, where: str) -> None:
        if words == ["fastport", "keygen"]:
            assert len(base64.b64decode(output, validate=True)) == 32, f"{where}: not a key: {output!r}"
            self.env["FASTPORT_KEY"] = output
        elif words[:2] == ["fastport", "pub"]:
            args = build_parser().parse_args(words[1:])
            running = [s for s in self.subscribers if s.process.poll() is None and filter_matches(s.topic, args.topic)]
            acked = " acked" if args.wait_ack and running else ""
            expected = rf"\S+ delivered to {len(running)}{acked}"
            assert re.fullmatch(expected, output), f"{where}: expected {expected!r}, got {output!r}"
            for subscriber in running:
                subscriber.expected.append(f"{args.topic} {args.message}")
                wait_for(subscriber.stdout, f"{args.topic} {args.message}\n", subscriber.process, subscriber.where)
        elif output.startswith("{"):
            body = json.loads(output)
            if isinstance(body, dict) and "secretKey" in body:
                assert body["success"] is True and re.fullmatch(r"[0-9a-f]{64}", body["secretKey"]), output
                self.secret_keys[body["sessionName"]] = body["secretKey"]

    def _subscribe(self, command: str, words: list[str], where: str) -> None:
        args = build_parser().parse_args(words[1:])
        stdout, stderr = self.cwd / f"sub-{self._runs}.out", self.cwd / f"sub-{self._runs}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                ["bash", "-c", f"set -a\nexec {command}"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=self.cwd,
            )
        subscriber = Subscriber(process, args.topic, stdout, stderr, f"{where}: `{command}`")
        self.subscribers.append(subscriber)
        wait_for(stderr, f"subscribed to {args.topic}", process, subscriber.where)

    def stop(self) -> None:
        """Stop every subscriber by its PID."""
        for subscriber in self.subscribers:
            stop(subscriber.process, signal.SIGINT)

    def check_subscribers(self) -> None:
        """Each subscriber printed what was published to it, and something."""
        self.stop()
        for subscriber in self.subscribers:
            printed = subscriber.stdout.read_text(encoding="utf-8").splitlines()
            assert printed, f"{subscriber.where}: no documented publish reached it"
            assert printed == subscriber.expected, f"{subscriber.where}: printed {printed}"


def run_python(block: Block, env: dict[str, str], cwd: Path) -> None:
    script = cwd / f"{Path(block.doc).stem}-{block.line}.py"
    script.write_text(block.source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr, f"{block.where} exited {result.returncode}:\n{result.stderr}"
    for pattern in promised(block):
        assert re.search(pattern, result.stdout, re.MULTILINE), f"{block.where}: no {pattern!r} in:\n{result.stdout}"


def readme_span(prefix: str) -> Span:
    matches = [span for span in inline_commands("README.md") if span.command.startswith(prefix)]
    assert len(matches) == 1, f"README.md: {len(matches)} inline commands start with {prefix!r}"
    return matches[0]


def with_secret_key(span: Span, shell: Shell) -> str:
    """The prose's `` `fastport session drop NAME ... --secret-key KEY` `` with the key createSession answered."""
    name = shlex.split(span.command)[3]
    assert name in shell.secret_keys, f"{span.where}: no session {name!r} was created before"
    return re.sub(r"\bKEY\b", shell.secret_keys[name], span.command)


def run_readme_span(span: Span, shell: Shell, done: set[Span]) -> None:
    words = shlex.split(span.command)
    if span in done:
        return
    if words[:3] == ["fastport", "session", "create"] and words[3] in shell.secret_keys:
        # "or, equivalently, `fastport session create ...`": the session exists; drop it the way the prose says.
        drop = readme_span(f"fastport session drop {words[3]} ")
        shell.run(with_secret_key(drop, shell), drop.where, '{"success":true}')
        done.add(drop)
        del shell.secret_keys[words[3]]
        shell.run(span.command, span.where, '{"success":true,"sessionName":"' + words[3] + '",...}')
    elif words[:3] == ["fastport", "session", "drop"]:
        shell.run(with_secret_key(span, shell), span.where, '{"success":true}')
    else:
        for name, value in TOUR_ENV.items():
            shell.env.setdefault(name, value)
        shell.run(span.command, span.where)
    done.add(span)


def run_document(doc: str, root: Path) -> None:
    blocks, spans = runnable(doc), inline_commands(doc) if doc == "README.md" else []
    items: list[Block | Span] = sorted([*blocks, *spans], key=lambda item: item.line)
    with Broker(root) as broker:
        shell = Shell(broker.env, root)
        done: set[Span] = set()
        try:
            if doc in USES_README_SESSION:
                create = readme_span("fastport session create ")
                shell.run(create.command, f"{doc} (its session, made as at {create.where})")
            for item in items:
                if isinstance(item, Span):
                    run_readme_span(item, shell, done)
                elif item.info == "python":
                    run_python(item, shell.env, root)
                else:
                    for command, shown in shell_commands(item):
                        shell.run(command, item.where, shown)
            shell.check_subscribers()
        finally:
            shell.stop()


# ----------------------------------------------------------------------------------------------- tests


def test_every_block_is_code_to_run_text_or_exempt() -> None:
    problems = []
    for doc in DOCS:
        blocks, _ = parse(doc)
        problems += [
            f"{b.where}: info string {b.info!r}: python, sh or bash for code (run here), text for the rest"
            for b in blocks
            if b.info not in CODE | NOT_CODE
        ]
        problems += [
            f"{b.where}: an exempt block must be code"
            for b in blocks
            if (doc, b.source.strip()) in EXEMPT and b.info not in CODE
        ]
    all_blocks = [b for doc in DOCS for b in parse(doc)[0]]
    for doc, text in EXEMPT:
        count = sum(b.doc == doc and b.source.strip() == text for b in all_blocks)
        if count != 1:
            problems.append(f"EXEMPT names {count} blocks of {doc} reading {text!r}")
    python = [b for doc in DOCS for b in runnable(doc) if b.info == "python"]
    for doc, line in PRINTS:
        count = sum(b.doc == doc and line in b.source for b in python)
        if count != 1:
            problems.append(f"PRINTS names {count} python blocks of {doc} with {line!r}")
    problems += [f"{b.where} prints: say what in PRINTS" for b in python if "print(" in b.source and not promised(b)]
    assert not problems, "\n".join(problems)


def test_inline_commands_are_the_readme_tour() -> None:
    """Only README.md's prose has commands to run (the others only name `fastport serve`); they are known kinds."""
    elsewhere = [span.where + ": " + span.command for doc in DOCS[1:] for span in inline_commands(doc)]
    assert not elsewhere, f"inline commands outside README.md, not run by this test: {elsewhere}"
    kinds = {"create", "drop", "keygen", "sub", "pub"}
    for span in inline_commands("README.md"):
        words = shlex.split(span.command)
        kind = words[2] if words[:2] == ["fastport", "session"] else next((w for w in words if w in kinds), None)
        assert kind in kinds or words[0] == "export", f"{span.where}: no rule here runs `{span.command}`"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in [*TOUR_ENV, "FASTPORT_KEY"]:
        assert f"`{name}`" in readme, f"README.md no longer says the shell tour sets {name}"


@pytest.mark.parametrize("doc", [doc for doc in DOCS if runnable(doc) or (doc == "README.md" and inline_commands(doc))])
def test_examples_run_as_written(doc: str, tmp_path: Path) -> None:
    run_document(doc, tmp_path)


def test_output_pattern() -> None:
    pattern = output_pattern('{"a":"<2 hex chars>","b":<n>,...}')
    assert re.fullmatch(pattern, '{"a":"0f","b":12,"c":3}') and not re.fullmatch(pattern, '{"a":"0g","b":1}')
