"""SMS texts per language, from the data files in gateway/templates/*.toml.

Texts live in data files so that a community can translate or reword them
without touching code. A message names the place, the level, the value and
what to do, and must fit in two SMS parts even when it needs UCS-2 (accents
outside GSM-7, Chinese): 2 x 67 = 134 characters. When a long place name
would push it over, the place is shortened, never the action.
"""
import pathlib
import tomllib

MAX_CHARS = 134  # two concatenated UCS-2 parts
DIRECTORY = pathlib.Path(__file__).with_name("templates")
FALLBACK = "en"
# Alerts about the station itself: the action is to check it, not to evacuate.
EQUIPMENT = ("silent", "battery", "quality")
_cache = {}


class TemplateError(ValueError):
    """A language with no data file, or a text that cannot fit."""


def languages():
    return sorted(path.stem for path in DIRECTORY.glob("*.toml"))


def load(language):
    texts = _cache.get(language)
    if texts is None:
        path = DIRECTORY / ("%s.toml" % language)
        try:
            texts = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TemplateError("no message texts for language %r (have %s)"
                                % (language, ", ".join(languages()))) from None
        _cache[language] = texts
    return texts


def _window(seconds):
    if not seconds:
        return ""
    if seconds % 3600 == 0:
        return "%dh" % (seconds // 3600)
    if seconds % 60 == 0:
        return "%dmin" % (seconds // 60)
    return "%ds" % seconds


def format_value(kind, value, unit):
    """The value as people read it: 42.5 mm, 1.85 m, 3.41 V, 2 h."""
    if value is None or kind == "quality":
        return ""
    if kind == "silent":
        minutes = int(value // 60)
        return "%d h %02d min" % divmod(minutes, 60) if minutes >= 60 else "%d min" % minutes
    # Two decimals read well for rain and levels; strain and crack widths are
    # far below 1 and keep three significant digits instead of showing "0".
    text = "%.2f" % value if abs(value) >= 1 or value == 0 else "%.3g" % value
    if "e" not in text and "." in text:
        text = text.rstrip("0").rstrip(".")
    return "%s %s" % (text, unit) if unit and unit not in ("count", "/") else text


def repeat(language, text):
    """text marked as a possible second copy, in the recipient's language."""
    return _texts(language).get("marks", {}).get("repeat", "REPEAT: ") + text


def _texts(language):
    try:
        return load(language)
    except TemplateError:
        return load(FALLBACK)


def render_late(language, *, place, level, kind, channel, value, unit, window_s, alert_id,
                onset, peak, ended, now_level):
    """What happened and when, for data that came late: the peak, since when,
    and whether it is over (ended: a time, or None while it goes on)."""
    texts = _texts(language)
    late = texts["late"]
    state = (late["ended"].format(time=ended) if ended is not None else
             late["active"].format(level=texts["levels"].get(now_level, now_level.upper())))
    text = late["message"].format(
        place=place, level=texts["levels"].get(level, level.upper()),
        what=_what(texts, kind, channel, window_s), value=format_value(kind, value, unit),
        onset=onset, peak=peak, state=state, id=alert_id)
    return " ".join(text.split())


def render_timeline(language, *, place, alert_id, kind, unit, events):
    """Every event of an alert as "time LEVEL value" for operators; events
    are (time text, level, value). Operators' phones take a long message:
    no two-part limit here."""
    texts = _texts(language)
    items = []
    for when, level, value in events:
        name = texts["late"]["clear"] if level == "clear" else texts["levels"].get(
            level, level.upper())
        items.append(("%s %s %s" % (when, name, format_value(kind, value, unit))).strip())
    return texts["late"]["timeline"].format(place=place, id=alert_id, events="; ".join(items))


def _what(texts, kind, channel, window_s):
    channel_name = texts.get("channels", {}).get(channel or "", channel or "")
    return texts["what"].get(kind, "{channel}").format(channel=channel_name,
                                                      window=_window(window_s))


def render(language, message, *, place="", level="", kind="above", channel=None, value=None,
           unit="", window_s=0, alert_id="", group=""):
    """The SMS text for `message` ("alert", "update", "clear", "test")."""
    texts = _texts(language)
    what = _what(texts, kind, channel, window_s)
    fields = {
        "level": texts["levels"].get(level, level.upper()),
        "action": texts["actions"].get("equipment" if kind in EQUIPMENT else level, ""),
        "what": what,
        "value": format_value(kind, value, unit),
        "id": alert_id,
        "group": group,
    }
    template = texts["messages"][message]
    text = template.format(place=place, **fields)
    if len(text) > MAX_CHARS:
        room = len(place) - (len(text) - MAX_CHARS) - 1
        if room < 4:
            raise TemplateError("%s/%s text is %d characters, over %d even without the place"
                                % (language, message, len(text), MAX_CHARS))
        text = template.format(place=place[:room] + "…", **fields)
    return " ".join(text.split())
