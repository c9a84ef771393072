"""The hot commands' fast path (:mod:`sealpod.cli.fast`) against typer itself: each command's table is typer's
command's, and every argument list it parses gives the command's body what typer gives it; what it does not read
exactly as click does, it leaves to typer."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main

from sealpod.cli import fast
from sealpod.cli import pull as pull_module
from sealpod.cli import run as run_module
from sealpod.cli.app import build_app
from sealpod.cli.pull_start import start as pull_start
from sealpod.cli.run_start import start as run_start

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
#: command -> (its spec, the typer module that calls its body, the body)
COMMANDS: dict[str, tuple[fast.CommandSpec, ModuleType, Any]] = {
    "run": (fast.RUN, run_module, run_start),
    "pull": (fast.PULL, pull_module, pull_start),
}


def _command(name: str) -> Any:
    """typer's click command (typer carries its own copy of click)."""
    return typer.main.get_command(build_app(name)).commands[name]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", COMMANDS)
def test_each_table_is_typer_s_command(name: str) -> None:
    spec, _, body = COMMANDS[name]
    flags: dict[str, tuple[str, bool]] = {}
    options: dict[str, str] = {}
    repeated: set[str] = set()
    defaults: dict[str, Any] = {}
    required: set[str] = set()
    positional: list[str] = []
    variadic = False
    for param in _command(name).params:
        assert param.name is not None
        if param.param_type_name == "argument":
            positional.append(param.name)
            variadic = param.nargs == -1
            continue
        if param.required:
            required.add(param.name)
        else:
            defaults[param.name] = param.default
        if param.is_flag:
            flags.update({spelling: (param.name, True) for spelling in param.opts})
            flags.update({spelling: (param.name, False) for spelling in param.secondary_opts})
        else:
            options.update({spelling: param.name for spelling in param.opts})
        if param.multiple:
            repeated.add(param.name)
    defaults["tls_verify"] = defaults["tls_verify"] == "true"  # the bodies take it parsed
    if variadic:
        defaults[positional[-1]] = None
    assert flags == spec.flags
    assert options == spec.options
    assert repeated == spec.repeated
    assert defaults == spec.defaults
    assert required == spec.required
    assert (tuple(positional), variadic) == (spec.positional, spec.variadic)
    assert set(inspect.signature(body).parameters) == {*spec.positional, *spec.defaults, *spec.required}
    assert spec.body == f"{body.__module__}:{body.__name__}"


def _typer_parse(name: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    _, module, body = COMMANDS[name]
    seen: dict[str, Any] = {}

    def capture(*positional: Any, **named: Any) -> int:
        seen.update(inspect.signature(body).bind(*positional, **named).arguments)
        return 0

    monkeypatch.setattr(module, "start", capture)
    build_app(name)([name, *args], standalone_mode=False)
    return seen


PARSED = [
    ("run", ["reg.example/app:v1", "--kbs", "http://127.0.0.1:8080"]),
    ("run", ["--sim", "reg.example/app:v1", "--kbs=http://k", "--tls-verify=false", "-d", "--rm"]),
    ("run", ["img", "--kbs", "u", "-e", "A=1", "--env", "B=2", "-v", "/a:/b:ro", "--volume=/c:/d", "cmd"]),
    ("run", ["img", "echo", "hi", "--name", "web", "--net", "host", "--rootfs=memory", "-m", "64m", "--pids-limit=7"]),
    ("run", ["img", "--kbs", "u", "--", "sh", "-c", "echo $X", "--sim"]),
    ("run", ["img", "--policy-uri", "kbs:///default/security-policy/x", "--init-data", "init.toml", "--kbs-ca", "c"]),
    ("run", ["img", "--tls-verify", "NO", "--no-pool", "--kbs", "", "-", "--name", "a", "--name", "b"]),
    ("run", ["img", "--pids-limit=+12", "--tls-verify=1", "--kbs", "u=v"]),
    ("pull", ["docker://reg.example/app:v1", "--rootfs", "out"]),
    ("pull", ["--rootfs=out", "oci:dir:tag", "--platform", "linux/arm64/v8", "--tls-verify=false", "--ca-file", "c"]),
    ("pull", ["img", "--rootfs", "r", "--allow-devices", "--no-allow-devices", "--max-size", "2g", "--max-entries=9"]),
    ("pull", ["img", "--rootfs", "r", "--policy", "p.json", "--registries-d", "d", "--insecure-policy"]),
    ("pull", ["img", "--rootfs", "r", "--decryption-key", "k.pem", "--decryption-key=provider:attestation-agent"]),
    ("pull", ["img", "--rootfs", "r", "--"]),
    ("pull", ["--rootfs", "r", "--", "-img"]),
]


@pytest.mark.parametrize(("name", "args"), PARSED)
def test_what_the_fast_path_parses_typer_parses_the_same(
    name: str, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = fast.parse(COMMANDS[name][0], args)
    assert ours is not None
    assert ours == _typer_parse(name, args, monkeypatch)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("run", []),
        ("run", ["--help"]),
        ("run", ["img", "--help"]),
        ("run", ["img", "sh", "-c", "x"]),  # an unknown option: typer's error
        ("run", ["img", "--kbs"]),  # a missing value
        ("run", ["img", "--name", "-x"]),  # a value that looks like an option
        ("run", ["img", "--sim=true"]),  # a flag given a value
        ("run", ["img", "-dm", "64m"]),  # short flags together
        ("run", ["img", "-e=C"]),  # click reads the value '=C': left to it
        ("run", ["img", "--tls-verify", "maybe"]),  # a value typer refuses
        ("run", ["img", "--pids-limit", "many"]),
        ("run", ["img", "--pids-limit", "1_000"]),
        ("pull", ["img"]),  # the required --rootfs is missing
        ("pull", ["img", "other", "--rootfs", "r"]),  # one image only
        ("pull", ["--rootfs", "r"]),
        ("pull", ["img", "--rootfs", "r", "--max-entries", "x"]),
    ],
)
def test_anything_else_is_left_to_typer(name: str, args: list[str]) -> None:
    assert fast.parse(COMMANDS[name][0], args) is None


def test_typer_answers_what_the_fast_path_leaves() -> None:
    proc = subprocess.run([SEALPOD, "run", "img", "sh", "-c", "x"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "No such option: -c" in proc.stderr
    proc = subprocess.run([SEALPOD, "pull", "img"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Missing option '--rootfs'" in proc.stderr
    proc = subprocess.run([SEALPOD, "run", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "--no-pool" in proc.stdout


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["run", "reg.example/app:v1", "--net", "bridge", "--kbs", "http://k"], 1),
        (["pull", "oci:/nonexistent/layout:v1", "--rootfs", "/nonexistent/out"], 1),
    ],
)
def test_a_fast_command_imports_no_typer_and_fails_as_typer_s_command_does(argv: list[str], code: int) -> None:
    program = (
        "import sys\n"
        "from sealpod.cli import fast\n"
        f"code = fast.run({argv!r})\n"
        "assert 'typer' not in sys.modules and 'click' not in sys.modules, 'typer was imported'\n"
        "sys.exit(code)\n"
    )
    ours = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    typed = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.argv = ['sealpod', *{argv!r}]; import sealpod.cli.app as a; a.main()"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ours.returncode == typed.returncode == code, ours.stderr
    assert ours.stderr == typed.stderr
    assert ours.stderr.startswith("error: ")
