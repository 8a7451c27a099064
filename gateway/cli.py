"""The `huaico` command: one click group that each part of the gateway extends."""
import click

from gateway import cli_alerts, cli_core, cli_demo, cli_flash, cli_ops

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="huaico")
def main():
    """huaico: community sensor networks that warn of floods.

    \b
    Example:
        huaico init
        huaico device add quebrada-alta --board pico_w --site "Quebrada Alta"
        huaico run
    """


for _part in (cli_core, cli_alerts, cli_ops, cli_flash, cli_demo):
    _part.register(main)
