"""How a rule would have done: `huaico rules replay` as an evaluation.

Operators must see a rule's record before they trust it with an evacuation.
Over the stored readings (huaico.rules.engine.replay, which writes and sends
nothing) and an optional CSV of reference events (debris flows, floods that
really happened: `time,place`), this counts per rule:

    fired          episodes (a raise from nothing), and how many reached each level
    lead time      for each reference event, how long before it the episode
                   that covers it was raised (an episode covers an event when it
                   was raised at most `lookback_s` before it and had not
                   cleared before it)
    missed         reference events no episode covers
    false alarms   episodes that cover no reference event

A reference event's place matches an episode when it is empty, or equals
(without regard to case and spacing) the rule's place or site, or the
episode's device name, id or site.

Worked example: a rule raises at 14:00 and clears at 16:00, and again at
20:00 (cleared 20:30); the reference CSV holds one flow at 14:25. The first
episode covers it with a lead time of 25 minutes; the second covers nothing
(one false alarm); nothing is missed.
"""
import csv
import datetime
import statistics

from huaico.rules import engine as rules

DEFAULT_LOOKBACK_S = 6 * 3600


class EvaluationError(ValueError):
    """A reference file that cannot be read; names the line and field."""


def parse_time(text):
    """Epoch seconds from epoch digits or an ISO 8601 date-time (local time
    when it has no offset)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def load_references(path):
    """[(time, place)] from a CSV with a header naming `time` and `place`
    (place may be absent or empty: any place), oldest first."""
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise EvaluationError("cannot read %s: %s" % (path, exc.strerror)) from None
    with handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "time" not in reader.fieldnames:
            raise EvaluationError("%s: the first line must name the columns, e.g. time,place"
                                  % path)
        events = []
        for row in reader:
            try:
                when = parse_time(row["time"] or "")
            except ValueError:
                raise EvaluationError("%s line %d: time %r is neither epoch seconds nor an ISO "
                                      "date-time" % (path, reader.line_num, row["time"])) from None
            events.append((when, (row.get("place") or "").strip()))
    return sorted(events)


def episodes(events):
    """[{subject, index, raised, cleared, peak}] from replay events."""
    open_, done = {}, []
    for t, subject, index, event, level, _ in events:
        key = (subject, index)
        if event == "raise":
            open_[key] = {"subject": subject, "index": index, "raised": t, "cleared": None,
                          "peak": level}
            done.append(open_[key])
        elif key in open_:
            episode = open_[key]
            if event == "clear":
                episode["cleared"] = t
                del open_[key]
            elif rules.LEVELS.index(level) > rules.LEVELS.index(episode["peak"]):
                episode["peak"] = level
    return done


def series(database, rule, since, until):
    """{device name: (times, values)} of the rule's channel from the devices
    it watches in [since, until) (until None: no end), ok readings only, in
    the rule's unit (millimetres of rain for an intensity-duration rule).
    database: anything with execute(sql, params) giving a cursor, a gateway's
    or the hub's (huaico.hub.reader.HubDatabase)."""
    until = 2 ** 62 if until is None else until
    out = {}
    for ident, name, site in database.execute("SELECT id, name, site FROM devices ORDER BY name"):
        if rule.code is None or not rule.matches({"id": ident, "name": name, "site": site}):
            continue
        rows = database.execute("SELECT time, value FROM readings WHERE device_id = ? AND "
                                "channel = ? AND quality = 0 AND time >= ? AND time < ? "
                                "ORDER BY time", [ident, rule.code, since, until]).fetchall()
        if rows:
            out[name] = ([t for t, _ in rows], [rule.physical(v) for _, v in rows])
    return out


def firings(events):
    """[(time, level)] of the moments a rule fired: raises and steps up."""
    levels, out = {}, []
    for t, subject, index, event, level, _ in events:
        key = (subject, index)
        if event == "clear":
            levels.pop(key, None)
            continue
        if event == "raise" or rules.LEVELS.index(level) > levels.get(key, -1):
            out.append((t, level))
        levels[key] = rules.LEVELS.index(level)
    return out


def _places(rule, episode, devices):
    device = devices.get(episode["subject"], {})
    names = {rule.place, rule.site, device.get("name"), device.get("id"), device.get("site")}
    if episode["subject"].startswith("basin:"):
        names.add(episode["subject"][len("basin:"):])
    return {rules.site_key(name) for name in names if name}


def evaluate(rule, events, references, devices, lookback_s=DEFAULT_LOOKBACK_S):
    """The rule's record (a dict, ready for JSON) from its replay events,
    the reference events and {device id: device row}."""
    found = episodes(events)
    covered = set()
    refs = []
    for when, place in references:
        key = rules.site_key(place)
        best = None
        for n, episode in enumerate(found):
            if key and key not in _places(rule, episode, devices):
                continue
            if not when - lookback_s <= episode["raised"] <= when:
                continue
            if episode["cleared"] is not None and episode["cleared"] < when:
                continue
            if best is None or episode["raised"] < found[best]["raised"]:
                best = n
        if best is not None:
            covered.add(best)
        refs.append({"time": when, "place": place, "detected": best is not None,
                     "lead_s": None if best is None else when - found[best]["raised"]})
    leads = [r["lead_s"] for r in refs if r["detected"]]
    by_level = {}
    for episode in found:
        by_level[episode["peak"]] = by_level.get(episode["peak"], 0) + 1
    return {
        "rule": rule.name, "kind": rule.kind, "fired": len(found), "by_peak_level": by_level,
        "episodes": found, "references": refs,
        "missed": sum(1 for r in refs if not r["detected"]),
        "false_alarms": len(found) - len(covered) if references else None,
        "lead_s": {"min": min(leads), "median": statistics.median(leads), "max": max(leads)}
        if leads else None,
    }


def summary(record):
    """Lines for people."""
    lines = ["%s (%s): fired %d time(s)%s" % (
        record["rule"], record["kind"], record["fired"],
        " (peak %s)" % ", ".join("%s %d" % (level, record["by_peak_level"][level])
                                 for level in rules.LEVELS if level in record["by_peak_level"])
        if record["fired"] else "")]
    if record["references"]:
        lead = record["lead_s"]
        lines.append("  reference events %d: detected %d, missed %d; false alarms %d%s" % (
            len(record["references"]), len(record["references"]) - record["missed"],
            record["missed"], record["false_alarms"],
            "; lead time min %s, median %s, max %s" % tuple(
                _span(lead[k]) for k in ("min", "median", "max")) if lead else ""))
        for ref in record["references"]:
            lines.append("  %s %s: %s" % (
                datetime.datetime.fromtimestamp(ref["time"]).strftime("%Y-%m-%d %H:%M"),
                ref["place"] or "(any place)",
                "warned %s before" % _span(ref["lead_s"]) if ref["detected"] else "MISSED"))
    return lines


def _span(seconds):
    minutes = int(round(seconds / 60.0))
    return "%dh%02dm" % divmod(minutes, 60) if minutes >= 60 else "%d min" % minutes
