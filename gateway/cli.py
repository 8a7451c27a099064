"""The `huaico` command: one click group that each part of the gateway extends."""
import click

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="huaico")
def main():
    """huaico: community sensor networks that warn of floods.

    \b
    Example:
        huaico --version
    """

from gateway.cli_core import register as _register_core; _register_core(main)  # noqa: E402
from gateway.cli_alerts import register as _register_alerts; _register_alerts(main)  # noqa: E402
from gateway.cli_ops import register as _register_ops; _register_ops(main)  # noqa: E402
from gateway.cli_flash import register as _register_flash; _register_flash(main)  # noqa: E402
from gateway.cli_demo import register as _register_demo; _register_demo(main)  # noqa: E402
