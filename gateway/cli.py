"""The `huaico` command: one click group that each part of the gateway extends."""
import click

from gateway import (cli_admin, cli_alerts, cli_core, cli_demo, cli_flash, cli_hub, cli_ops,
                     cli_station, version)

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
@click.version_option(version.describe(), prog_name="huaico", message="%(prog)s %(version)s")
def main():
    """huaico: community sensor networks that warn of floods.

    \b
    Example:
        huaico init
        huaico device add quebrada-alta --board pico_w --site "Quebrada Alta"
        huaico run
    """


for _part in (cli_core, cli_station, cli_alerts, cli_ops, cli_admin, cli_flash, cli_demo,
              cli_hub):
    _part.register(main)
