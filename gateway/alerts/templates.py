"""SMS texts per language, from the data files in gateway/alerts/templates/*.toml.

Texts live in data files so that a community can translate or reword them
without touching code. Every alert text says, in this order, the level in
one word, the place, what was measured in plain units, the local time of
the reading and what to do; the acknowledgement hint comes last and short.

A text is made to cost one SMS part where the alphabet allows it: in a
language written in the Latin alphabet (script = "latin" in its file) the
text is transliterated to GSM-7 (huaico.sms.alphabet) unless its group
sends accents with a national shift table, and it is checked against the
parts it will be sent in, with room for the repeat mark a second copy gets.
When it does not fit, the place is shortened; when even that cannot make
it one part, the action is kept in the first part.
"""
import pathlib
import tomllib

from huaico.sms import alphabet as sms_alphabet, pdu as sms_pdu

DIRECTORY = pathlib.Path(__file__).with_name("templates")
FALLBACK = "en"
# Alerts about the station itself: the action is to check it, not to evacuate.
EQUIPMENT = ("silent", "battery", "quality")
# A shortened place keeps at least this many characters (then "...").
MIN_PLACE = 12
_cache = {}


class TemplateError(ValueError):
    """A language with no data file."""


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


def _texts(language):
    try:
        return load(language)
    except TemplateError:
        return load(FALLBACK)


def _window(texts, seconds):
    """A rule's window in words: "10 minutos", "1 hora"."""
    if not seconds:
        return ""
    words = texts["time"]
    for size, one, many in ((3600, "hour", "hours"), (60, "minute", "minutes"),
                            (1, "second", "seconds")):
        if seconds % size == 0:
            count = seconds // size
            return words[one if count == 1 else many].format(n=count)
    return words["seconds"].format(n=seconds)


def format_value(kind, value, unit, units=None, spans=None, space=" "):
    """The value as people read it: 42.5 mm, 1.85 m, 3.41 V, 2 h 05 min;
    units maps a unit symbol to the language's plain words for it, spans
    holds its words for a silence ("{h} h {m:02d} min", "{m} min"), space
    goes between number and unit (none in Chinese)."""
    if value is None or kind == "quality":
        return ""
    if kind == "silent":
        spans = spans or {"span_hours": "{h} h {m:02d} min", "span_minutes": "{m} min"}
        hours, minutes = divmod(int(value // 60), 60)
        return (spans["span_hours"].format(h=hours, m=minutes) if hours else
                spans["span_minutes"].format(m=minutes))
    # Two decimals read well for rain and levels; strain and crack widths are
    # far below 1 and keep three significant digits instead of showing "0".
    text = "%.2f" % value if abs(value) >= 1 or value == 0 else "%.3g" % value
    if "e" not in text and "." in text:
        text = text.rstrip("0").rstrip(".")
    if not unit or unit in ("count", "/"):
        return text
    return "%s%s%s" % (text, space, (units or {}).get(unit, unit))


def _what(texts, kind, channel, window_s, value, unit):
    """What was measured, with its value in plain units: "42.5 mm de lluvia en 1 hora"."""
    channel_name = texts["channels"].get(channel or "", texts["channels"]["other"])
    return texts["what"].get(kind, "{channel} {value}").format(
        channel=channel_name, window=_window(texts, window_s),
        value=format_value(kind, value, unit, texts["units"], texts["time"],
                                 texts.get("unit_space", " ")))


def _action(texts, level, kind, actions=None):
    """The action for a level, the site's own (actions: level -> text) first."""
    key = "equipment" if kind in EQUIPMENT else level
    return (actions or {}).get(key) or texts["actions"].get(key, "")


# -- fitting a text to its SMS parts -----------------------------------------

def sms_form(language, text, shift=None):
    """What is stored and sent: GSM-7 after transliteration for a language in
    the Latin alphabet, unless shift (a national single shift table, see
    huaico.sms.pdu.SHIFT_TABLES) carries every character as it is."""
    if _texts(language).get("script") != "latin":
        return text
    if shift and sms_pdu.choose_encoding(text, sms_pdu.SHIFT_TABLES[shift][1]) == sms_pdu.GSM7:
        return text
    return sms_alphabet.to_gsm7(text)


def parts(text, shift=None):
    """The parts text goes out in, as huaico.sms.pdu.submit_pdus cuts them."""
    return sms_pdu.layout(text, shift)[2]


def _fits(text, action, shift):
    """(one part, action in the first part) for text as it will be sent."""
    cut = parts(text, shift)
    if len(cut) == 1:
        return True, True
    at = text.find(action) if action else -1
    end = at + len(action) if at >= 0 else len(text)
    head = parts(text[:end], shift)
    return False, len(head) == 1 and len(head[0]) <= len(cut[0])


def _fitted(language, template, place, fields, action, shift):
    """The template filled in and made ready to send. The place is shortened
    ("...") as little as makes the text one part with room for the repeat
    mark, else one part without that room (a repeat may then take two),
    else two parts with the action in the first."""
    mark = _texts(language)["marks"]["repeat"]

    def fill(name):
        text = " ".join(template.format(place=name, **fields).split())
        return sms_form(language, text, shift)

    def shortened(shortest):
        yield fill(place)
        for size in range(len(place) - 1, shortest - 1, -1):
            yield fill(place[:size].rstrip() + "...")

    for prefix in (mark, ""):
        for text in shortened(MIN_PLACE):
            if _fits(prefix + text, action, shift)[0]:
                return text
    for text in shortened(4):
        if _fits(text, action, shift)[1]:
            return text
    return fill(place)


# -- the texts -------------------------------------------------------------------

def render(language, message, *, place="", level="", kind="above", channel=None, value=None,
           unit="", window_s=0, alert_id="", group="", time="", actions=None, shift=None,
           sms=True):
    """The text for `message` ("alert", "update", "clear", "test"). time is
    the reading's local time as text; actions the site's own (level -> text);
    sms False gives the text as written (CAP headlines), not fitted to SMS."""
    texts = _texts(language)
    action = _action(texts, level, kind, actions)
    fields = {
        "level": texts["levels"].get(level, level.upper()),
        "action": action,
        "what": _what(texts, kind, channel, window_s, value, unit),
        "id": alert_id,
        "group": group,
        "time": time,
    }
    template = texts["messages"][message]
    if not sms:
        return " ".join(template.format(place=place, **fields).split())
    return _fitted(language, template, place, fields, sms_form(language, action, shift), shift)


def render_late(language, *, place, level, kind, channel, value, unit, window_s, alert_id,
                onset, peak, ended, now_level, actions=None, shift=None):
    """What happened and when, for data that came late: the peak, since when,
    and whether it is over (ended: a time, or None while it goes on, with the
    action of the level now)."""
    texts = _texts(language)
    late = texts["late"]
    action = "" if ended is not None else _action(texts, now_level, kind, actions)
    state = (late["ended"].format(time=ended) if ended is not None else
             late["active"].format(level=texts["levels"].get(now_level, now_level.upper()),
                                   action=action, id=alert_id))
    fields = {
        "level": texts["levels"].get(level, level.upper()),
        "what": _what(texts, kind, channel, window_s, value, unit),
        "onset": onset, "peak": peak, "state": state, "id": alert_id,
    }
    return _fitted(language, late["message"], place, fields,
                   sms_form(language, action, shift), shift)


def render_timeline(language, *, place, alert_id, kind, unit, events, shift=None):
    """Every event of an alert as "time LEVEL value" for operators; events
    are (time text, level, value). Operators' phones take a long message:
    no one-part limit here."""
    texts = _texts(language)
    items = []
    for when, level, value in events:
        name = texts["late"]["clear"] if level == "clear" else texts["levels"].get(
            level, level.upper())
        items.append(("%s %s %s" % (when, name, format_value(
            kind, value, unit, texts["units"], texts["time"], texts.get("unit_space", " ")))).strip())
    text = texts["late"]["timeline"].format(place=place, id=alert_id, events="; ".join(items))
    return sms_form(language, text, shift)


def repeat(language, text):
    """text marked as a possible second copy, in the recipient's language."""
    return _texts(language)["marks"]["repeat"] + text
