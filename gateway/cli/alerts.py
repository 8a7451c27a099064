"""`huaico rules ...` and `huaico alerts ...`: thin commands over huaico.rules.engine,
huaico.alerts.lifecycle and the outbox, for operators over SSH."""
import datetime
import json
import time

import click

from huaico.alerts import lifecycle as alerts, templates
from huaico.cli.common import (for_json, home_option, hub_option, local_time, open_rules,
                               said_truncated, user_errors)
from huaico.ops import plotting
from huaico.rules import engine as rules, evaluation


_user_errors = user_errors(rules.RuleError, alerts.AlertError, templates.TemplateError,
                           evaluation.EvaluationError, plotting.PlotError, ValueError)


def _when(text, now):
    """Epoch seconds from "24h" / "7d" (ago) or an ISO date or datetime (local time)."""
    try:
        return now - rules.parse_duration(text)
    except rules.RuleError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter("%r: a duration such as 24h or a date such as 2026-01-01"
                                 % text) from None


_LISTED = 50  # alerts list: the newest this many
# Ids are 64-bit in both stores: a bigger number is a usage error, not an
# overflow inside sqlite3 or a server error.
_ALERT_ID = click.IntRange(min=1, max=2 ** 63 - 1)


def _stamp(epoch):
    return "-" if epoch is None else datetime.datetime.fromtimestamp(epoch).strftime(
        "%Y-%m-%d %H:%M:%S")


def _load_rule(store, name):
    row = store.rule_named(name)
    if row is None:
        raise click.ClickException("no rule named %r (see `huaico rules list`)" % name)
    return rules.Rule.from_row(row)


def _device_names(store):
    """{device id: name}, for showing names where tables hold ids."""
    return {device["id"]: device["name"] for device in store.devices(active=False)}


def _rule_options(function):
    options = [
        click.option("--kind", type=click.Choice(rules.KINDS), help="What the rule checks."),
        click.option("--device", help="One device (name)."),
        click.option("--site", help="Every device of a site."),
        click.option("--channel", help="Channel name, e.g. rain, water_level, tilt_x."),
        click.option("--index", "idx", type=int, help="Sensor index (default: each index)."),
        click.option("--window", help="Window for accumulation/rise, e.g. 10m, 1h, 24h."),
        click.option("--levels", help="e.g. watch=20,warning=40,emergency=60 (physical units; "
                                      "silent: durations, e.g. watch=30m)."),
        click.option("--hysteresis", type=float, help="Clear only below threshold minus this."),
        click.option("--min-duration", help="Condition must hold this long, e.g. 5m."),
        click.option("--bucket-mm", type=float, help="Tipping bucket size for rain_tips."),
        click.option("--place", help="Place name used in messages (default: device and site)."),
        click.option("--disable/--enable", "disabled", default=None, help="Switch the rule off/on."),
        click.option("--preset", help="intensity-duration: a published curve, caine1980 or "
                                      "guzzetti2008 (global; calibrate locally)."),
        click.option("--alpha", type=float, help="intensity-duration: I = alpha * D^-beta, "
                                                 "mm/h at D = 1 h."),
        click.option("--beta", type=float, help="intensity-duration: the curve's slope."),
        click.option("--durations", help="intensity-duration: durations checked, e.g. "
                                         "10m,1h,3h,24h."),
        click.option("--antecedent", help="intensity-duration: wet-day term, e.g. "
                                          "k=0.9,saturation_mm=150,floor=0.5; 'off' removes it."),
        click.option("--k", "k_gauges", type=int, help="k-of-n / basin-mean: gauges that must "
                                                       "agree (k-of-n) or be known (mean)."),
        click.option("--stale", help="k-of-n / basin-mean: a gauge unheard this long is "
                                     "unknown (default: the window)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _params(params, preset, alpha, beta, durations, antecedent, k_gauges, stale):
    """The rule's params with the options given laid over them."""
    params = dict(params or {})
    if preset is not None:
        params.pop("alpha", None)
        params.pop("beta", None)
        params["preset"] = preset
    if alpha is not None or beta is not None:
        params.pop("preset", None)
        params.update({key: value for key, value in (("alpha", alpha), ("beta", beta))
                       if value is not None})
    if durations is not None:
        params["durations"] = [rules.parse_duration(d) for d in durations.split(",") if d.strip()]
    if antecedent == "off":
        params.pop("antecedent", None)
    elif antecedent is not None:
        term = {}
        for part in filter(None, (p.strip() for p in antecedent.split(","))):
            key, _, value = part.partition("=")
            try:
                term[key.strip()] = float(value)
            except ValueError:
                raise rules.RuleError("antecedent %s: %r is not a number" % (key, value)) from None
        params["antecedent"] = term
    if k_gauges is not None:
        params["k"] = k_gauges
    if stale is not None:
        params["stale_s"] = rules.parse_duration(stale)
    return params


def _apply(fields, kind, device, site, channel, idx, window, levels, hysteresis, min_duration,
           bucket_mm, place, disabled, preset, alpha, beta, durations, antecedent, k_gauges,
           stale):
    fields["params"] = _params(fields.get("params"), preset, alpha, beta, durations, antecedent,
                               k_gauges, stale)
    if kind is not None:
        fields["kind"] = kind
    for key, value in (("device", device), ("site", site), ("channel", channel), ("idx", idx),
                       ("hysteresis", hysteresis), ("bucket_mm", bucket_mm), ("place", place)):
        if value is not None:
            fields[key] = value
    if window is not None:
        fields["window_s"] = rules.parse_duration(window)
    if min_duration is not None:
        fields["min_duration_s"] = rules.parse_duration(min_duration)
    if levels is not None:
        fields["levels"] = rules.parse_levels(levels, fields.get("kind"))
    if disabled is not None:
        fields["enabled"] = 0 if disabled else 1
    return rules.Rule(**fields)


def _save(store, rule, now, new):
    row = rule.to_row()
    row["updated"] = now
    if new:
        row["created"] = now
        store.add_rule(row)
    else:
        store.change_rule(rule.id, row)


@click.group(name="rules")
def rules_group():
    """Alert rules: thresholds, accumulations, rises, silent devices,
    debris-flow intensity-duration curves, k of n gauges of a basin.
    Each kind with a worked example: docs/rules.md. With --hub DSN (or
    [hub] dsn in huaico.toml) every command works on the city's rules at
    the hub, whose workers pick a change up as a gateway does.

    \b
    Example:
        huaico rules add rain-1h --site chosica --channel rain --kind accumulation \\
            --window 1h --levels watch=20,warning=40,emergency=60 --hysteresis 5
        huaico rules list --hub 'host=db.example dbname=huaico user=huaico'
    """


@rules_group.command(name="list")
@home_option
@hub_option
@click.option("--json", "as_json", is_flag=True, help="JSON array instead of a table.")
@_user_errors
def rules_list(home, hub_dsn, as_json):
    """List the rules.

    \b
    Example:
        huaico rules list --json
    """
    with open_rules(home, hub_dsn) as (_, opened):
        found = [rules.Rule.from_row(row) for row in opened.store.all_rules()]
    if as_json:
        click.echo(json.dumps([dict(r.to_row(), levels=r.levels, params=r.params) for r in found], indent=2))
        return
    for rule in found:
        click.echo("%-20s %s%s" % (rule.name, rule.describe(), "" if rule.enabled else " (off)"))


@rules_group.command(name="show")
@home_option
@hub_option
@click.argument("name")
@_user_errors
def rules_show(home, hub_dsn, name):
    """Show one rule and its current state per device.

    \b
    Example:
        huaico rules show rain-1h
    """
    with open_rules(home, hub_dsn) as (_, opened):
        rule = _load_rule(opened.store, name)
        names = _device_names(opened.store)
        states = opened.store.rule_states(rule.id)
    click.echo(json.dumps(dict(rule.to_row(), levels=rule.levels, params=rule.params), indent=2))
    for device_id, idx, level, value, updated in states:
        # A basin rule keeps its level at idx 0 and its coverage at idx 1.
        part = ((" gauges" if device_id.startswith("basin:") else " sensor %d" % idx)
                if idx else "")
        click.echo("%s%s: %s value=%s at %s" % (
            names.get(device_id, device_id), part,
            level or "normal", value, local_time(updated)))


@rules_group.command(name="add")
@home_option
@hub_option
@click.argument("name")
@_rule_options
@_user_errors
def rules_add(home, hub_dsn, name, **options):
    """Add a rule.

    \b
    Example:
        huaico rules add rain-1h --device g1 --channel rain --kind accumulation \\
            --window 1h --levels watch=20,warning=40,emergency=60 --hysteresis 5 --min-duration 0
        huaico rules add quiet --site chosica --kind silent --levels watch=30m,warning=2h
        huaico rules add huaico-curve --site chosica --kind intensity-duration \
            --preset caine1980 --durations 10m,1h,3h,24h \
            --levels watch=0.75,warning=1,emergency=1.5 --antecedent k=0.9,saturation_mm=150
        huaico rules add basin-2of3 --site chosica --kind k-of-n --channel rain --window 1h \
            --k 2 --stale 30m --levels watch=15,warning=30
    """
    if options["kind"] is None or options["levels"] is None:
        raise click.UsageError("--kind and --levels are required")
    rule = _apply({"name": name}, **options)
    with open_rules(home, hub_dsn) as (_, opened), opened.write() as store:
        rules.check_targets(store, rule)
        if store.rule_named(name) is not None:
            raise click.ClickException("a rule named %r exists; use `huaico rules edit`" % name)
        _save(store, rule, time.time(), new=True)
    click.echo("added %s: %s" % (name, rule.describe()))


@rules_group.command(name="edit")
@home_option
@hub_option
@click.argument("name")
@_rule_options
@_user_errors
def rules_edit(home, hub_dsn, name, **options):
    """Change some fields of a rule; the running gateway picks it up.

    \b
    Example:
        huaico rules edit rain-1h --levels watch=25,warning=45,emergency=70
    """
    with open_rules(home, hub_dsn) as (_, opened), opened.write() as store:
        old = _load_rule(store, name)
        fields = {key: getattr(old, key) for key in rules.Rule.FIELDS if key != "updated"}
        if options["kind"] is not None and options["levels"] is None:
            options["levels"] = ",".join("%s=%g" % item for item in old.levels.items())
        rule = _apply(fields, **options)
        rules.check_targets(store, rule)
        _save(store, rule, time.time(), new=False)
    click.echo("changed %s: %s" % (name, rule.describe()))


@rules_group.command(name="remove")
@home_option
@hub_option
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove even with active alerts (they are cancelled "
                                            "without an all-clear).")
@_user_errors
def rules_remove(home, hub_dsn, name, force):
    """Remove a rule.

    \b
    Example:
        huaico rules remove rain-1h
    """
    with open_rules(home, hub_dsn) as (_, opened), opened.write() as store:
        rule = _load_rule(store, name)
        active = store.active_alerts(rule.id)
        if active and not force:
            raise click.ClickException("%d active alert(s) from %s; wait for the all-clear or "
                                       "use --force" % (active, name))
        store.remove_rule(rule.id)
    click.echo("removed %s" % name)


def _tracer(names_by_id):
    """({subject name: (times, values)}, the callback rules.replay fills it with)."""
    trace = {}

    def record(t, subject, index, value):
        times, values = trace.setdefault(names_by_id.get(subject, subject), ([], []))
        times.append(t)
        values.append(value)
    return trace, record


@rules_group.command(name="replay")
@home_option
@hub_option
@click.argument("names", nargs=-1)
@click.option("--since", required=True, help="Start: 24h / 7d ago, or a date 2026-01-01.")
@click.option("--until", help="End (default: none).")
@click.option("--events", "events_csv", type=click.Path(dir_okay=False),
              help="CSV of reference events (header time,place) to score the rules against.")
@click.option("--lookback", default="6h", show_default=True,
              help="An alert raised at most this long before a reference event warned of it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule: its events "
                                                      "and its record.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False),
              help="Plot the readings, the rule's value against its thresholds and the "
                   "firings (needs the plot extra; one rule).")
@_user_errors
def rules_replay(home, hub_dsn, names, since, until, events_csv, lookback, as_json, png_path):
    """Run rules (default: every enabled one) over stored readings: when
    each would have fired and cleared, and with --events how early it warned
    of each reference event, which it missed and its false alarms. Writes
    nothing and sends nothing.

    \b
    Example:
        huaico rules replay rain-1h --since 2026-01-01 --until 2026-02-01
        huaico rules replay --since 2026-01-01 --events flows.csv --json
        huaico rules replay huaico-curve --since 30d --png curve.png
    """
    with open_rules(home, hub_dsn) as (_, opened):
        _replay(opened, names, since, until, events_csv, lookback, as_json, png_path)


def _replay(opened, names, since, until, events_csv, lookback, as_json, png_path):
    store = opened.store
    if names:
        chosen = [_load_rule(store, name) for name in names]
    else:
        chosen = [rules.Rule.from_row(row) for row in store.all_rules()
                  if row["enabled"] == 1 and row["kind"] != "silent"]
    if png_path and len(chosen) != 1:
        raise click.UsageError("--png draws one rule: name it")
    now = time.time()
    start = _when(since, now)
    end = _when(until, now) if until else None  # no end: readings stamped ahead count too
    # Only the reference events inside the replayed time can be scored.
    references = [(t, place) for t, place in
                  (evaluation.load_references(events_csv) if events_csv else [])
                  if start <= t and (end is None or t < end)]
    devices = {device["id"]: device for device in store.devices(active=False)}
    names_by_id = _device_names(store)
    results = []
    for rule in chosen:
        trace, record_value = _tracer(names_by_id)
        events = rules.replay(store, rule, start, end, trace=record_value)
        record = evaluation.evaluate(rule, events, references, devices,
                                     rules.parse_duration(lookback))
        results.append((rule, events, record))
        if png_path:
            plotting.replay_png(png_path, evaluation.series(opened.database, rule, start, end),
                                trace,
                                rule.levels, evaluation.firings(events),
                                [t for t, _ in references], "%s: %s" % (rule.name,
                                                                        rule.describe()),
                                "mm" if rule.kind == "intensity-duration" else rule.unit,
                                rule.unit)
    if as_json:
        click.echo(json.dumps([dict(record, events=[dict(zip(
            ("time", "device", "index", "event", "level", "value"), e)) for e in events])
            for _, events, record in results], indent=2))
        return
    for rule, events, record in results:
        for t, device_id, idx, event, level, value in events:
            click.echo("%s  %s%s  %-6s %-9s %.2f %s" % (
                _stamp(t), names_by_id.get(device_id, device_id), "/%d" % idx if idx else "",
                event, level, value, rule.unit))
        click.echo("%d event(s)" % len(events))
        for line in evaluation.summary(record):
            click.echo(line)
    if png_path:
        click.echo("wrote %s" % png_path)


@click.group(name="alerts")
def alerts_group():
    """Alerts raised, their messages, acknowledgements and test messages.
    With --hub DSN (or [hub] dsn in huaico.toml) every command works on the
    city's alerts at the hub.

    \b
    Example:
        huaico alerts list
        huaico alerts list --hub 'host=db.example dbname=huaico user=huaico'
    """


@alerts_group.command(name="list")
@home_option
@hub_option
@click.option("--all", "show_all", is_flag=True, help="Also cleared ones (the newest 50).")
@click.option("--json", "as_json", is_flag=True, help="JSON array instead of a table.")
@_user_errors
def alerts_list(home, hub_dsn, show_all, as_json):
    """Active alerts (with --all, recent ones too), and failed messages.

    \b
    Example:
        huaico alerts list --all
    """
    with open_rules(home, hub_dsn) as (_, opened):
        found = opened.store.recent_alerts(_LISTED + 1, active_only=not show_all)
        failed = opened.store.failed_messages()
    more = len(found) > _LISTED
    found = found[:_LISTED]
    if more:
        said_truncated(_LISTED, "alerts", "`huaico alerts show ID` for older ones, or "
                                          "`huaico serve` to browse them all")
    if as_json:
        click.echo(json.dumps(for_json(found), indent=2))
        return
    for a in found:
        click.echo("%5d %-9s %-9s %s  %s=%s %s  raised %s%s" % (
            a["id"], a["status"], a["level"], a["place"], a["rule_name"], a["value"],
            a["unit"] or "", _stamp(a["raised"]),
            "  acked by %s" % a["acked_by"] if a["acked_by"] else ""))
    if failed:
        click.echo("%d message(s) failed permanently: `huaico alerts show ID`" % failed)


@alerts_group.command(name="show")
@home_option
@hub_option
@click.argument("alert_id", type=_ALERT_ID)
@_user_errors
def alerts_show(home, hub_dsn, alert_id):
    """One alert: its CAP events, every message with its text and how it
    went, and the SMS replies that named it (acknowledgements).

    \b
    Example:
        huaico alerts show 42
    """
    with open_rules(home, hub_dsn) as (_, opened):
        alert = alerts._alert(opened.store, alert_id)
        events = opened.store.events(alert_id)
        messages = opened.store.messages(alert_id)
        replies = opened.store.replies(alert_id)
    for key, value in alert.items():
        click.echo("%-11s %s" % (key, _stamp(value) if key in ("raised", "cleared", "acked",
                                                                "escalated") else value))
    for event in events:
        click.echo("event %s %s %s at %s" % (event["identifier"], event["msg_type"],
                                             event["level"], _stamp(event["time"])))
    for oid, transport, recipient, status, attempts, error, body in messages:
        click.echo("message %d %s %s: %s after %d attempt(s)%s" % (
            oid, transport, recipient, status, attempts, " (%s)" % error if error else ""))
        if transport == "sms":  # what the phone shows; MQTT bodies are CAP for machines
            for line in body.splitlines():
                click.echo("    %s" % line)
    for t, number, text, action, detail in replies:
        click.echo("reply %s from %s at %s: %s (%s)" % (json.dumps(text, ensure_ascii=False),
                                                       number, _stamp(t), action, detail))


@alerts_group.command(name="ack")
@home_option
@hub_option
@click.argument("alert_id", type=_ALERT_ID)
@click.option("--by", default="cli", help="Who acknowledges (kept with the alert).")
@_user_errors
def alerts_ack(home, hub_dsn, alert_id, by):
    """Acknowledge an alert: stops its escalation.

    \b
    Example:
        huaico alerts ack 42 --by "Rosa (municipal)"
    """
    with open_rules(home, hub_dsn) as (_, opened), opened.write() as store:
        fresh = alerts.acknowledge(store, alert_id, by, time.time())
    click.echo("acknowledged %d" % alert_id if fresh else "alert %d was already acknowledged"
               % alert_id)


@alerts_group.command(name="test")
@home_option
@hub_option
@click.argument("group")
@click.option("--wait", type=float, default=0, help="Seconds to wait for the running gateway "
                                                    "to deliver (0: just queue).")
@_user_errors
def alerts_test(home, hub_dsn, group, wait):
    """Queue a test SMS to every number of GROUP through the outbox, exactly
    as an alert goes; the running gateway (`huaico run`) delivers it. Refused
    without an SMS backend; a test not sent within [alerts] test_expiry_s
    expires rather than reach phones hours later. With --hub the hub's
    workers deliver it, and GROUP, [alerts] and the SMS backend are those
    the workers told the hub when they started (`huaico hub run --config`;
    the one with an SMS backend, the last started); the first line says
    whose, or that this huaico.toml's were used because no worker told any.

    \b
    Example:
        huaico alerts test leaders --wait 60
    """
    with open_rules(home, hub_dsn) as (config, opened):
        where = "huaico.toml"
        known = opened.worker_config() if hasattr(opened, "worker_config") else None
        if known is not None:
            worker_id, host, started, config = known
            where = "the hub workers' --config"
            click.echo("groups and [sms] of hub worker %s on %s (its config as of %s)"
                       % (worker_id, host, local_time(started)))
        elif hasattr(opened, "worker_config"):
            click.echo("groups and [sms] of %s: no hub worker has told the hub its config "
                       "(`huaico hub run --config` does)" % (config.home / "huaico.toml"))
        if config["sms"]["backend"] == "none":
            raise click.ClickException('no SMS backend: set [sms] backend = "modem" or "spool" '
                                       "in %s, then try again" % where)
        with opened.write() as store:
            ids = alerts.queue_test(store, config, group, time.time())
        click.echo("queued %d test message(s) to %s: outbox %s" % (len(ids), group,
                                                                   ", ".join(map(str, ids))))
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline:
            if all(state[1] != "pending" for state in opened.store.message_states(ids)):
                break
            time.sleep(0.5)
        if wait:
            for recipient, status, error in opened.store.message_states(ids):
                click.echo("%s: %s%s" % (recipient, status, " (%s)" % error if error else ""))


def register(main):
    """Add `rules` and `alerts` to the `huaico` group (gateway/cli/main.py)."""
    main.add_command(rules_group)
    main.add_command(alerts_group)
