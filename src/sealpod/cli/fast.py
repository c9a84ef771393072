"""The hot commands (``sealpod run``, ``sealpod pull``) without typer: their arguments parsed here when they are
ones this parser reads exactly as click does, since importing typer and building the command is ~40 ms of a
pre-launched enclave's ~120 ms warm start and of a small pull. Anything else (``--help``, a global flag, an unknown,
repeated-flag or malformed option, a value this parser does not check as typer would) returns None, and typer parses
and answers as it always does. ``tests/cli/test_fast.py`` holds each table to typer's command and every parse to
typer's own.

A pre-launched enclave's start is mostly this process's own start, so the path to a pooled ``sealpod run`` imports
only the interpreter's built-in modules (console output, pathlib and the rest load when an error or an option needs
them)."""

from __future__ import annotations

from sealpod.errors import SealpodError

TYPE_CHECKING = False  # typing's own flag would import typing (~2 ms); mypy honours any flag of this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class CommandSpec:
    """One command's arguments as typer declares them, and where its typer-free body is (a plain class: the
    dataclasses module is ~6 ms of imports)."""

    __slots__ = ("body", "defaults", "flags", "kinds", "options", "positional", "repeated", "required", "variadic")

    def __init__(
        self,
        *,
        flags: dict[str, tuple[str, bool]],
        options: dict[str, str],
        repeated: frozenset[str],
        defaults: dict[str, Any],
        required: frozenset[str],
        positional: tuple[str, ...],
        variadic: bool,
        kinds: dict[str, str],
        body: str,
    ) -> None:
        #: flag spelling -> (parameter, the value it sets)
        self.flags = flags
        #: option spelling -> parameter (one value each)
        self.options = options
        #: the parameters whose option may be given many times
        self.repeated = repeated
        #: every optional parameter's value when absent (typer's defaults)
        self.defaults = defaults
        #: required options: without one, typer says so
        self.required = required
        #: the positional parameters; with ``variadic`` the last takes the rest
        self.positional = positional
        self.variadic = variadic
        #: conversions of option values: ``int``, ``path``, ``bool`` (true/false as --tls-verify)
        self.kinds = kinds
        #: ``module:function`` taking the parameters as keywords and returning the exit status
        self.body = body


RUN = CommandSpec(
    flags={
        "-d": ("detach", True),
        "--detach": ("detach", True),
        "--rm": ("rm", True),
        "--sim": ("sim", True),
        "--no-pool": ("no_pool", True),
    },
    options={
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
    },
    repeated=frozenset({"env", "volume"}),
    defaults={
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
    },
    required=frozenset(),
    positional=("image", "command"),
    variadic=True,
    kinds={"tls_verify": "bool", "pids": "int", "init_data": "path"},
    body="sealpod.cli.run_start:start",
)

PULL = CommandSpec(
    flags={
        "--allow-devices": ("allow_devices", True),
        "--no-allow-devices": ("allow_devices", False),
        "--insecure-policy": ("insecure_policy", True),
    },
    options={
        "--rootfs": "rootfs",
        "--platform": "platform",
        "--tls-verify": "tls_verify",
        "--ca-file": "ca_file",
        "--max-size": "max_size",
        "--max-entries": "max_entries",
        "--policy": "policy",
        "--registries-d": "registries_d",
        "--decryption-key": "decryption_key",
    },
    repeated=frozenset({"decryption_key"}),
    defaults={
        "platform": None,
        "tls_verify": True,
        "ca_file": None,
        "allow_devices": False,
        "max_size": None,
        "max_entries": None,
        "policy": None,
        "registries_d": None,
        "insecure_policy": False,
        "decryption_key": None,
    },
    required=frozenset({"rootfs"}),
    positional=("image",),
    variadic=False,
    kinds={"tls_verify": "bool", "max_entries": "int", "rootfs": "path", "policy": "path", "registries_d": "path"},
    body="sealpod.cli.pull_start:start",
)

COMMANDS = {"run": RUN, "pull": PULL}


def parse(spec: CommandSpec, args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of ``spec``'s body for the command's ``args``, or None when typer should parse them."""
    values = dict(spec.defaults)
    repeated: dict[str, list[str]] = {key: [] for key in spec.repeated}
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
        if name in spec.flags and not equals:
            flag, flag_value = spec.flags[name]
            values[flag] = flag_value
            continue
        key = spec.options.get(name)
        if key is None:
            return None
        if equals:
            value = inline
        elif index < len(args) and not args[index].startswith("-"):
            value = args[index]
            index += 1
        else:
            return None
        if key in spec.repeated:
            repeated[key].append(value)
        else:
            values[key] = value
    if not positional or (len(positional) > len(spec.positional) and not spec.variadic):
        return None
    if any(key not in values for key in spec.required):
        return None
    for key, given in zip(spec.positional, positional, strict=False):
        values[key] = given
    if spec.variadic:
        values[spec.positional[-1]] = positional[len(spec.positional) - 1 :] or None
    elif len(positional) < len(spec.positional):
        return None
    for key, items in repeated.items():
        values[key] = items or None
    return _converted(spec, values)


def _converted(spec: CommandSpec, values: dict[str, Any]) -> dict[str, Any] | None:
    """The typed values as typer would pass them, or None when one is not what typer accepts."""
    for key, kind in spec.kinds.items():
        value = values[key]
        if not isinstance(value, str):
            continue  # the default, already typed
        if kind == "bool":
            from sealpod.cli.values import bool_value

            values[key] = bool_value(value)
            if values[key] is None:
                return None
        elif kind == "int":
            text = value.strip()
            if not text.lstrip("+-").isdigit():
                return None
            values[key] = int(text)
        else:
            from pathlib import Path

            values[key] = Path(value)
    return values


def run(argv: list[str]) -> int | None:
    """``sealpod ARGV`` when it is a command this module parses: its exit status; else None."""
    spec = COMMANDS.get(argv[0]) if argv else None
    if spec is None:
        return None
    values = parse(spec, argv[1:])
    if values is None:
        return None
    module, function = spec.body.split(":")
    body: Callable[..., int] = getattr(__import__(module, fromlist=[function]), function)
    if spec is PULL:
        from sealpod.cli.console import log_to_stderr

        log_to_stderr(False)
    try:
        return body(**values)
    except (SealpodError, OSError) as err:
        from sealpod.cli.console import report

        return report(err, False)
    except KeyboardInterrupt:
        from sealpod.cli.console import err_console

        err_console.print("interrupted")
        return 130
