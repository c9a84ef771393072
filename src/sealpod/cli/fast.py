"""``sealpod run`` without typer: its arguments parsed here when they are ones this parser reads exactly as
click reads them, since importing typer and building the command is ~40 ms of a pre-launched enclave's ~120 ms warm
start. Anything else (``--help``, a global flag, an unknown, repeated-flag or malformed option, a value this parser
does not check as typer would) returns None, and typer parses and answers as it always does.
``tests/cli/test_fast.py`` holds the option table to typer's command and every parse to typer's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sealpod.cli.console import bool_value, err_console, log_to_stderr, report
from sealpod.errors import SealpodError

#: ``sealpod run``'s flags (no value) and options (one value), by spelling, to the parameter of
#: :func:`sealpod.cli.run_start.start` they set
RUN_FLAGS = {"-d": "detach", "--detach": "detach", "--rm": "rm", "--sim": "sim", "--no-pool": "no_pool"}
RUN_OPTIONS = {
    "--kbs": "kbs",
    "-e": "env",
    "--env": "env",
    "-v": "volume",
    "--volume": "volume",
    "--name": "name",
    "--net": "net",
    "--rootfs": "rootfs",
    "--tls-verify": "tls_verify",
    "--kbs-ca": "kbs_ca",
    "-m": "memory",
    "--memory": "memory",
    "--pids-limit": "pids",
    "--policy-uri": "policy_uri",
    "--init-data": "init_data",
}
#: options that may be given many times (each adds a value)
RUN_REPEATED = frozenset({"env", "volume"})
#: every parameter's value when its option is absent (typer's defaults)
RUN_DEFAULTS: dict[str, Any] = {
    "command": None,
    "kbs": "",
    "env": None,
    "volume": None,
    "name": None,
    "detach": False,
    "net": "none",
    "rootfs": "gocryptfs",
    "rm": False,
    "sim": False,
    "tls_verify": True,
    "kbs_ca": None,
    "memory": None,
    "pids": None,
    "no_pool": False,
    "policy_uri": None,
    "init_data": None,
}


def parse_run(args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of :func:`~sealpod.cli.run_start.start` for ``sealpod run ARGS``, or None when typer
    should parse them."""
    values = dict(RUN_DEFAULTS)
    repeated: dict[str, list[str]] = {key: [] for key in RUN_REPEATED}
    positional: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            positional.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, equals, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in RUN_FLAGS and not equals:
            values[RUN_FLAGS[name]] = True
            continue
        key = RUN_OPTIONS.get(name)
        if key is None:
            return None
        if equals:
            value = inline
        elif index < len(args) and not args[index].startswith("-"):
            value = args[index]
            index += 1
        else:
            return None
        if key in RUN_REPEATED:
            repeated[key].append(value)
        else:
            values[key] = value
    if not positional:
        return None
    values["image"], command = positional[0], positional[1:]
    values["command"] = command or None
    for key, items in repeated.items():
        values[key] = items or None
    return _converted(values)


def _converted(values: dict[str, Any]) -> dict[str, Any] | None:
    """The typed values as typer would pass them, or None when one is not what typer accepts."""
    if isinstance(values["tls_verify"], str):
        values["tls_verify"] = bool_value(values["tls_verify"])
        if values["tls_verify"] is None:
            return None
    if values["pids"] is not None:
        text = values["pids"].strip()
        if not text.lstrip("+-").isdigit():
            return None
        values["pids"] = int(text)
    if values["init_data"] is not None:
        values["init_data"] = Path(values["init_data"])
    return values


def run(argv: list[str]) -> int | None:
    """``sealpod ARGV`` when it is a ``sealpod run`` this module parses: its exit status; else None."""
    if argv[:1] != ["run"]:
        return None
    values = parse_run(argv[1:])
    if values is None:
        return None
    from sealpod.cli.run_start import start

    log_to_stderr(False)
    try:
        return start(**values)
    except (SealpodError, OSError) as err:
        return report(err, False)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
