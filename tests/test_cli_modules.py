import typer.main

from mess.cli import app

# The order of ``mess --help``: moving commands between modules must not reorder it.
HELP_ORDER = [
    "costs",
    "calibrate",
    "convert",
    "inspect",
    "demo",
    "export",
    "assemble",
    "query",
    "run",
    "search",
    "merge",
    "serve",
    "worker",
    "push",
    "synth",
    "token",
    "train",
]


def test_each_command_lives_in_the_module_named_after_it():
    for command in app.registered_commands:
        assert command.callback.__module__ == f"mess.cli.{command.name}", command.name
    for group in app.registered_groups:
        for command in group.typer_instance.registered_commands:
            assert command.callback.__module__ == f"mess.cli.{group.name}", (
                f"{group.name} {command.name}"
            )


def test_help_lists_the_commands_in_their_usual_order():
    group = typer.main.get_command(app)
    assert group.list_commands(group.context_class(group)) == HELP_ORDER
