"""The lazily loaded ``billing`` group: its static table of commands matches the commands themselves."""

from __future__ import annotations

import click
from click.testing import CliRunner

from billing_cli.main import COMMANDS, cli, load_command


def test_every_table_entry_loads_the_command_of_that_name_with_that_short_help() -> None:
    for name, (_, short_help) in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        assert command.get_short_help_str(limit=10_000) == short_help


def test_help_lists_every_command_with_the_same_text_as_the_loaded_commands() -> None:
    lazy_help = CliRunner().invoke(cli, ["--help"], prog_name="billing").output
    loaded = click.Group(name="billing", help=cli.help, commands={name: load_command(name) for name in COMMANDS})
    assert lazy_help == CliRunner().invoke(loaded, ["--help"], prog_name="billing").output
    for name in COMMANDS:
        assert f"\n  {name} " in lazy_help


def test_topups_keeps_its_stripe_sub_commands() -> None:
    topups = load_command("topups")
    assert isinstance(topups, click.Group)
    assert {"record", "list", "checkout", "refund"} <= set(topups.commands)
