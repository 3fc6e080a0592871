"""Readers for the files in ``deploy/``, shared by the deploy tests.

Each reader returns what the real program would see: a systemd unit's settings (continuation
lines joined, repeated keys kept), a uvicorn command line parsed by uvicorn's own click command,
nginx directives with comments removed.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import click

from channels_scale.stack.configs import worker_command
from channels_scale.stack.options import RunLayout, StackOptions

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: Worker count every deploy file is written for.
WORKERS = 4
SOCKET_DIR = "/run/channels-scale"
#: uvicorn options that say where a worker listens: they differ between deployments on purpose.
LISTEN_PARAMS = {"uds", "host", "port"}
LISTEN_FLAGS = {"--uds", "--host", "--port"}
#: The environment every deployment gives its workers (the brief's contract with the worker app).
WORKER_ENV = {
    "CHANNELS_SCALE_WORKER_ID",
    "CHANNELS_SCALE_REDIS_URL",
    "CHANNELS_SCALE_LAYER",
    "CHANNELS_SCALE_APP",
    "DJANGO_SETTINGS_MODULE",
    "CHANNELS_SCALE_MAX_MESSAGE_BYTES",
}


def socket_path(worker: int) -> str:
    return f"{SOCKET_DIR}/worker-{worker}.sock"


def read(relative: str) -> str:
    return (DEPLOY / relative).read_text()


# --- uvicorn command lines ------------------------------------------------------------------------


def _uvicorn_command() -> click.Command:
    # `uvicorn.main` the attribute is the function re-exported by the package; the module holds
    # the click command.
    command = importlib.import_module("uvicorn.main").main
    assert isinstance(command, click.Command)
    return command


def uvicorn_args(argv: list[str]) -> list[str]:
    """The arguments after ``PYTHON -m uvicorn`` (asserting the command has that shape)."""
    assert argv[0].endswith("python"), argv
    assert argv[1:3] == ["-m", "uvicorn"], argv
    return argv[3:]


def parse_uvicorn(args: list[str]) -> dict[str, Any]:
    """``args`` parsed by uvicorn's own CLI: an unknown flag or a bad value raises."""
    with _uvicorn_command().make_context("uvicorn", list(args)) as ctx:
        return dict(ctx.params)


def given_flags(args: list[str]) -> set[str]:
    return {arg for arg in args if arg.startswith("--")}


def reference_args() -> list[str]:
    """The uvicorn arguments ``channels-scale up`` gives a worker (``worker_command()``)."""
    options = StackOptions(workers=WORKERS, server="uvicorn", max_message_bytes=65536)
    argv = worker_command(options, RunLayout.of(Path("/nonexistent/run")))
    return uvicorn_args(argv)


# --- systemd units -------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as ``{section: [(key, value), ...]}``: keys may repeat (Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.startswith("[") and logical.endswith("]"):
            current = sections.setdefault(logical[1:-1], [])
        else:
            assert current is not None, f"setting outside a section: {logical!r}"
            key, sep, value = logical.partition("=")
            assert sep, f"not a key=value line: {logical!r}"
            current.append((key.strip(), value.strip()))
        logical = ""
    return sections


def unit_value(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    values = unit_values(unit, section, key)
    assert len(values) == 1, f"[{section}] {key}= set {len(values)} times"
    return values[0]


def unit_values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def systemd_worker_argv(worker: int) -> list[str]:
    unit = parse_unit(read("systemd/channels-scale-worker@.service"))
    exec_start = unit_value(unit, "Service", "ExecStart")
    return shlex.split(exec_start.replace("%i", str(worker)))


# --- nginx ---------------------------------------------------------------------------------------


def strip_nginx_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def nginx_block(text: str, header: str) -> str:
    """The body of the first ``header { ... }`` block (braces balanced), comments removed."""
    text = strip_nginx_comments(text)
    match = re.search(re.escape(header) + r"\s*\{", text)
    assert match, f"no `{header} {{` block"
    depth, start = 1, match.end()
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start:index]
    raise AssertionError(f"unbalanced braces after `{header}`")


def directives(block: str) -> list[str]:
    """The simple directives of a block, whitespace-normalised (nested blocks are included)."""
    return [" ".join(part.split()) for part in re.split(r"[;{}]", block) if part.strip()]


# --- containers ----------------------------------------------------------------------------------


def dockerfile_instruction(text: str, instruction: str) -> str:
    """The (single) argument of a Dockerfile instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = [
        line.split(None, 1)[1]
        for line in joined.splitlines()
        if line.split(None, 1)[:1] == [instruction]
    ]
    assert len(found) == 1, f"{instruction} appears {len(found)} times"
    return found[0]


def dockerfile_exec_form(text: str, instruction: str) -> list[str]:
    value = json.loads(dockerfile_instruction(text, instruction))
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value
