"""``sealpod run``'s fast path (:mod:`sealpod.cli.fast`) against typer itself: its option table is typer's command's,
and every argument list it parses gives :func:`~sealpod.cli.run_start.start` what typer gives it; what it does not
read exactly as click does, it leaves to typer."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from sealpod.cli import fast
from sealpod.cli import run as run_module
from sealpod.cli.app import build_app
from sealpod.cli.run_start import start

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def _run_command() -> Any:
    """typer's click command for ``sealpod run`` (typer carries its own copy of click)."""
    return typer.main.get_command(build_app("run")).commands["run"]  # type: ignore[attr-defined]


def test_the_option_table_is_typer_s_command() -> None:
    flags: dict[str, str] = {}
    options: dict[str, str] = {}
    repeated: set[str] = set()
    defaults: dict[str, Any] = {}
    for param in _run_command().params:
        assert param.name is not None
        defaults[param.name] = param.default
        if param.param_type_name != "option":
            continue
        table = flags if param.is_flag else options
        for spelling in [*param.opts, *param.secondary_opts]:
            table[spelling] = param.name
        if param.multiple:
            repeated.add(param.name)
    assert flags == fast.RUN_FLAGS
    assert options == fast.RUN_OPTIONS
    assert repeated == fast.RUN_REPEATED
    defaults.pop("image")
    defaults["tls_verify"] = defaults["tls_verify"] == "true"
    assert defaults == fast.RUN_DEFAULTS
    assert set(inspect.signature(start).parameters) == {"image", *fast.RUN_DEFAULTS}


def _typer_parse(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def capture(*positional: Any, **named: Any) -> int:
        seen.update(inspect.signature(start).bind(*positional, **named).arguments)
        return 0

    monkeypatch.setattr(run_module, "start", capture)
    build_app("run")(["run", *args], standalone_mode=False)
    return seen


PARSED = [
    ["reg.example/app:v1", "--kbs", "http://127.0.0.1:8080"],
    ["--sim", "reg.example/app:v1", "--kbs=http://k", "--tls-verify=false", "-d", "--rm"],
    ["img", "--kbs", "u", "-e", "A=1", "--env", "B=2", "-v", "/a:/b:ro", "--volume=/c:/d", "cmd"],
    ["img", "echo", "hi", "--name", "web", "--net", "host", "--rootfs=memory", "-m", "64m", "--pids-limit", "7"],
    ["img", "--kbs", "u", "--", "sh", "-c", "echo $X", "--sim"],
    ["img", "--policy-uri", "kbs:///default/security-policy/x", "--init-data", "init.toml", "--kbs-ca", "ca.pem"],
    ["img", "--tls-verify", "NO", "--no-pool", "--kbs", "", "-", "--name", "a", "--name", "b"],
    ["img", "--pids-limit=+12", "--tls-verify=1", "--kbs", "u=v"],
]


@pytest.mark.parametrize("args", PARSED)
def test_what_the_fast_path_parses_typer_parses_the_same(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ours = fast.parse_run(args)
    assert ours is not None
    assert ours == _typer_parse(args, monkeypatch)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["img", "--help"],
        ["img", "sh", "-c", "x"],  # an unknown option: typer's error
        ["img", "--kbs"],  # a missing value
        ["img", "--name", "-x"],  # a value that looks like an option
        ["img", "--sim=true"],  # a flag given a value
        ["img", "-dm", "64m"],  # short flags together
        ["img", "-e=C"],  # click reads the value '=C': left to it
        ["img", "--tls-verify", "maybe"],  # a value typer refuses
        ["img", "--pids-limit", "many"],
        ["img", "--pids-limit", "1_000"],
    ],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert fast.parse_run(args) is None


def test_typer_answers_what_the_fast_path_leaves() -> None:
    proc = subprocess.run([SEALPOD, "run", "img", "sh", "-c", "x"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "No such option: -c" in proc.stderr
    proc = subprocess.run([SEALPOD, "run", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "--no-pool" in proc.stdout


def test_a_fast_run_imports_no_typer_and_reports_errors_as_typer_s_commands_do(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from sealpod.cli import fast\n"
        "code = fast.run(['run', 'reg.example/app:v1', '--net', 'bridge', '--kbs', 'http://k'])\n"
        "assert 'typer' not in sys.modules and 'click' not in sys.modules, 'typer was imported'\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "error: --net 'bridge' is not supported\nhint: use 'none' or 'host'\n"
