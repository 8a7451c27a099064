"""Unknown keys in huaico.toml are errors that name the key and the closest
known one; the known keys come from the defaults (DEFAULT_TOML) alone."""
import pytest

from huaico import config


@pytest.mark.parametrize("text, said", [
    ('[alerts]\nquiet_hour = ""\n', "alerts: unknown key 'quiet_hour'; did you mean 'quiet_hours'?"),
    ("[alert]\nsender = 'x'\n", "config: unknown key 'alert'; did you mean 'alerts'?"),
    ('[[groups]]\nname = "a"\nnumber = ["+51987654321"]\n',
     "groups[0] (a): unknown key 'number'; did you mean 'numbers'?"),
    ("[sms]\nbackend = 'none'\nzzz = 1\n", "sms: unknown key 'zzz' (known: alert_after_s, backend, baudrate"),
])
def test_unknown_keys_are_named_with_the_closest(text, said):
    with pytest.raises(config.ConfigError) as caught:
        config.from_text(text, "/tmp")
    assert said in str(caught.value)


def test_every_default_key_is_known():
    # The commented file `huaico init` writes loads as it is, groups included.
    loaded = config.from_text(config.DEFAULT_TOML, "/tmp")
    # No placeholder number: a test or an alert must not text a stranger.
    assert loaded["groups"][0]["numbers"] == [] and loaded["sites"] == []
    # A section added to the defaults is known without a second list.
    assert set(config.DEFAULTS) >= {"gateway", "ingest", "clock", "mqtt", "sms", "alerts",
                                    "retention", "metrics", "groups"}
