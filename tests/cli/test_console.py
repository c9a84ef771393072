"""The plain console path (stream not a terminal, rich not imported) prints what rich would: differential tests with
rich itself as the reference."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.markup import escape as rich_escape
from rich.text import Text

from sealpod.cli.console import escape, strip_markup

SAMPLES = [
    "plain text",
    "[bold red]error:[/] cannot read [etc]/x",
    "[yellow]hint:[/] use --tls-verify=false",
    "a [link] and \\[not a tag] and \\\\[bold]x[/bold]",
    "ends with a backslash \\",
    "ends with two \\\\",
    "[ not a tag ] [1] [Upper] [#fff]c[/] [@click]d[/]",
    "sha256:0df9aa96:v1 docker://127.0.0.1:5000/app:v1",
    "\\\\\\[odd]",
    "a \\[1] b",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_escape_is_rich_s_and_an_escaped_text_prints_as_rich_prints_it(text: str) -> None:
    assert escape(text) == rich_escape(text)
    assert strip_markup(escape(text)) == Text.from_markup(escape(text), emoji=False).plain
    if not text.endswith("\\") and "\\[" not in text:
        assert strip_markup(escape(text)) == text


@pytest.mark.parametrize("markup", SAMPLES)
def test_stripped_markup_is_what_rich_prints_without_styles(markup: str) -> None:
    assert strip_markup(markup) == Text.from_markup(markup, emoji=False).plain


def test_a_command_s_messages_to_a_pipe_do_not_import_rich() -> None:
    code = (
        "import sys\n"
        "from sealpod.cli.console import err_console, escape\n"
        "err_console.print(f'[bold red]error:[/] {escape(\"bad [x]\")}')\n"
        "assert 'rich' not in sys.modules, sorted(m for m in sys.modules if m.startswith('rich'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "error: bad [x]\n"
