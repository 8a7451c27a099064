"""Alert texts fitted to the GSM 7-bit alphabet, so that a message in a Latin
script costs one SMS part instead of two.

One letter outside GSM-7 (TS 23.038 6.2.1) turns a whole message into UCS-2:
70 characters in one part instead of 160. Spanish needs á, í, ó and ú, which
GSM-7 lacks (é, ñ, ü, ¿ and ¡ it has), so an unaccented text is what
SMS platforms send in practice, and what every handset shows. Transliteration
is all or nothing: a text with a character that has no GSM-7 stand-in
(Chinese, Cyrillic) is left whole, to go out as UCS-2, rather than half
rewritten.

The Spanish national language single shift table (TS 23.038 A.2.2) keeps the
accents at two septets each, but networks and handsets that do not honour it
show the wrong letters; it is an option per recipient group
(huaico.sms.pdu.submit_pdus, shift="es"), off by default.
"""
from huaico.sms.pdu import GSM7_BASIC, GSM7_EXTENSION

# Letters and signs outside GSM-7 with the GSM-7 text people read the same.
# Letters keep their case; ç goes to Ç, the only c-cedilla GSM-7 has.
_STAND_IN = {}
for _letters, _base in (("áâãā", "a"), ("ÁÂÃĀÀ", "A"), ("êëē", "e"), ("ÊËĒÈ", "E"),
                        ("íîïī", "i"), ("ÍÎÏĪÌ", "I"), ("óôõō", "o"), ("ÓÔÕŌÒ", "O"),
                        ("úûū", "u"), ("ÚÛŪÙ", "U"), ("ýÿ", "y"), ("Ý", "Y"), ("ç", "Ç"),
                        ("‘’ʼ´`′", "'"), ("“”„«»″", '"'), ("‐‑‒–—―", "-"),
                        ("\u00a0\u2009\u202f", " ")):
    for _ch in _letters:
        _STAND_IN[_ch] = _base
_STAND_IN.update({"…": "...", "œ": "oe", "Œ": "OE", "°": ""})
del _letters, _base, _ch

_GSM7 = set(GSM7_BASIC) | set(GSM7_EXTENSION)
_GSM7.discard("\x1b")  # the escape septet is not a character


def fits_gsm7(text):
    return all(ch in _GSM7 for ch in text)


def to_gsm7(text):
    """text in GSM-7 when every character outside it has a stand-in, else text as it is."""
    if fits_gsm7(text):
        return text
    if not all(ch in _GSM7 or ch in _STAND_IN for ch in text):
        return text
    return "".join(_STAND_IN.get(ch, ch) for ch in text)
