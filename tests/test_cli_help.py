"""Every huaico command, walked from the click tree: `-h` works, the help
ends with an Example: block, and docs/cli.md matches a fresh generation."""
import importlib.util
import pathlib

import pytest
from click.testing import CliRunner

from huaico.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "tools" / "gen_cli_docs.py")
gen_cli_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_cli_docs)

PATHS = list(gen_cli_docs.command_paths())


def _command(path):
    command = main
    for word in path:
        command = command.commands[word]
    return command


def test_the_tree_has_the_operator_commands():
    names = {" ".join(path) for path in PATHS}
    assert {"status", "readings", "plot", "doctor", "storage estimate", "serve", "init", "run",
            "device add"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(("huaico",) + path))
def test_dash_h_shows_help_ending_with_an_example(path):
    name = " ".join(("huaico",) + path)
    result = CliRunner().invoke(main, list(path) + ["-h"], prog_name="huaico")
    assert result.exit_code == 0, "%s -h failed:\n%s" % (name, result.output)
    assert result.output.startswith("Usage: " + name), result.output
    lines = (_command(path).help or "").strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Example:"]
    assert starts and "Example:" in result.output, \
        "%s has no Example: block in its help (its docstring must end with one)" % name
    example = lines[starts[-1] + 1:]
    assert example and all(line.startswith(" ") or not line.strip() for line in example), \
        "%s: the Example: block must be the end of its help, with indented command lines" % name


def test_docs_cli_md_is_fresh():
    doc = gen_cli_docs.DOC
    assert doc.exists(), "docs/cli.md is missing: run `python tools/gen_cli_docs.py`"
    assert doc.read_text(encoding="utf-8") == gen_cli_docs.generate(), \
        "docs/cli.md is stale: run `python tools/gen_cli_docs.py`"
