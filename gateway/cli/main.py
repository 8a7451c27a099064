"""The `huaico` command: one click group that each part of the gateway extends."""
import click

from huaico import version
from huaico.cli import (admin as cli_admin, alerts as cli_alerts, core as cli_core,
                        demo as cli_demo, flash as cli_flash, hub as cli_hub, ops as cli_ops,
                        station as cli_station)

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
