"""`huaico demo`: run a whole scenario (boards, gateway, modem) and print a summary;
a thin command over huaico.demo.scenario."""
import click

from huaico.demo import scenario as demo_mod


@click.command()
@click.option("--scenario", "scenario", default=demo_mod.DEFAULT_SCENARIO, show_default=True,
              metavar="NAME|FILE", help="A shipped scenario's name (see --list) or a .toml file.")
@click.option("--home", type=click.Path(file_okay=False), default="demo-out", show_default=True,
              help="Data directory to create (a previous demo's is replaced); kept for inspection.")
@click.option("--speed", type=float, metavar="K", help="Simulated boards run K times faster "
                                                       "than real time (default: the scenario's).")
@click.option("--duration", type=float, metavar="SECONDS",
              help="Scenario seconds each board runs (default: the scenario's).")
@click.option("--no-mqtt", is_flag=True, help="Do not use a broker even if one is running.")
@click.option("--mqtt-port", type=int, default=1883, show_default=True,
              help="Port of the broker on 127.0.0.1 to use when it answers.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON at the end.")
@click.option("--list", "list_", is_flag=True, help="List the shipped scenarios and exit.")
@click.option("--export", metavar="NAME", help="Print a scenario file to copy and edit, and exit.")
def demo(scenario, home, speed, duration, no_mqtt, mqtt_port, as_json, list_, export):
    """Run a storm end to end on this machine: simulated boards running the real
    firmware, the gateway, rules, and SMS to an emulated modem.

    Sets up a fresh data directory (devices, rules, recipient groups), starts
    `huaico run`, a modem emulator and one MicroPython process per board,
    prints each frame, alert and SMS as it happens, and ends with a summary:
    frames, readings, alerts, messages and the time from each triggering rain
    tip to its SMS leaving the modem. Publishes to MQTT when a broker answers
    on 127.0.0.1:1883.

    \b
    Example:
        huaico demo
        huaico demo --list
        huaico demo --export cloudburst > my-storm.toml
        huaico demo --scenario my-storm.toml --home /tmp/storm
    """
    try:
        if list_:
            for name, title in demo_mod.list_scenarios():
                click.echo("%-18s %s" % (name, title))
            return
        if export:
            click.echo(demo_mod.export_text(export), nl=False)
            return
        loaded = demo_mod.load_scenario(scenario)
        run = demo_mod.Demo(loaded, home, echo=click.echo, speed=speed, duration=duration,
                            mqtt=not no_mqtt, mqtt_port=mqtt_port)
        result = run.run()
    except demo_mod.DemoError as exc:
        raise click.ClickException(str(exc)) from None
    for line in demo_mod.format_summary(result):
        click.echo(line)
    if as_json:
        import json
        click.echo(json.dumps(result, ensure_ascii=False))


def register(main):
    """Add `huaico demo` to the `huaico` group (gateway/cli/main.py)."""
    main.add_command(demo)
