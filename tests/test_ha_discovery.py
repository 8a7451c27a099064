"""Home Assistant MQTT discovery from a real `huaico run` into a real
Mosquitto: retained config topics per device and channel, with units and
device classes, read back by a fresh subscriber as a Home Assistant that
starts later would; the retained state they point at; and a retired
device's entities withdrawn."""
import json
import os
import socket
import subprocess
import time

import paho.mqtt.client as paho

from tests.test_run import CLI, WAIT


def _retained(port, patterns, settle=1.0):
    """{topic: payload} of the retained messages a new subscriber gets."""
    got = {}
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ha-reader-%d" % os.getpid())
    client.on_message = lambda c, u, message: got.__setitem__(message.topic, message.payload) \
        if message.retain else None
    client.connect("127.0.0.1", port)
    for pattern in patterns:
        client.subscribe(pattern, qos=1)
    client.loop_start()
    time.sleep(settle)
    client.loop_stop()
    client.disconnect()
    return got


def _wait_for(port, patterns, ready):
    deadline = time.monotonic() + WAIT
    while True:
        got = _retained(port, patterns, settle=0.5)
        if ready(got):
            return got
        assert time.monotonic() < deadline, sorted(got)


def test_stations_appear_in_home_assistant_and_leave_when_retired(gateway_home, mosquitto_broker):
    toml = gateway_home.path / "huaico.toml"
    toml.write_text(toml.read_text().replace("enabled = false", "enabled = true")
                    .replace("port = 1883", "port = %d" % mosquitto_broker.port))
    rain = gateway_home.add("pluvio-alto", site="Quebrada Alta")
    river = gateway_home.add("rio-puente", site="Puente")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp = probe.getsockname()[1]
    env = dict(os.environ, HUAICO_HOME=str(gateway_home.path), PYTHONPATH=os.getcwd())
    gateway = subprocess.Popen(CLI + ["run", "--udp", "127.0.0.1:%d" % udp,
                                      "--status-every", "3600"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    patterns = ["homeassistant/#", "huaico/+/state"]
    try:
        now = int(time.time())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.settimeout(10)
            for board, readings in ((rain, [(1, 0, 0, 123, 0), (19, 0, 0, 3710, 0)]),
                                    (river, [(4, 0, 0, 2500, 0), (4, 1, 0, 1800, 0),
                                             (5, 0, 0, 1850, 0)])):
                while True:  # until the gateway listens and acks
                    sender.sendto(board.frame(readings, time=now, seq=1), ("127.0.0.1", udp))
                    try:
                        sender.recv(256)
                        break
                    except (socket.timeout, ConnectionRefusedError):
                        assert gateway.poll() is None, gateway.communicate()[1]
        got = _wait_for(mosquitto_broker.port, patterns,
                        lambda got: len([t for t in got if t.endswith("/config")]) == 5)
        rain_id, river_id = rain.row["id"], river.row["id"]
        configs = {topic: json.loads(payload) for topic, payload in got.items()
                   if topic.endswith("/config")}
        assert sorted(configs) == sorted([
            "homeassistant/sensor/huaico_%s/rain/config" % rain_id,
            "homeassistant/sensor/huaico_%s/battery/config" % rain_id,
            "homeassistant/sensor/huaico_%s/water_level/config" % river_id,
            "homeassistant/sensor/huaico_%s/water_level_1/config" % river_id,
            "homeassistant/sensor/huaico_%s/water_temp/config" % river_id])
        level = configs["homeassistant/sensor/huaico_%s/water_level_1/config" % river_id]
        assert level["unit_of_measurement"] == "m" and level["device_class"] == "distance"
        assert level["state_topic"] == "huaico/%s/state" % river_id
        assert level["value_template"] == "{{ value_json['water_level/1'] }}"
        assert level["unique_id"] == "huaico_%s_water_level_1" % river_id
        assert level["device"]["name"] == "rio-puente"
        assert level["device"]["suggested_area"] == "Puente"
        assert level["availability_topic"] == "huaico/gateway/huaico-gateway/status"
        rain_config = configs["homeassistant/sensor/huaico_%s/rain/config" % rain_id]
        assert (rain_config["unit_of_measurement"], rain_config["device_class"]) == \
            ("mm", "precipitation")
        battery = configs["homeassistant/sensor/huaico_%s/battery/config" % rain_id]
        assert battery["entity_category"] == "diagnostic" and battery["device_class"] == "voltage"
        temp = configs["homeassistant/sensor/huaico_%s/water_temp/config" % river_id]
        assert temp["unit_of_measurement"] == "°C" and temp["device_class"] == "temperature"
        assert json.loads(got["huaico/%s/state" % river_id]) == {
            "water_level": 2.5, "water_level/1": 1.8, "water_temp": 18.5}
        assert json.loads(got["huaico/%s/state" % rain_id]) == {"rain": 12.3, "battery": 3.71}

        retired = subprocess.run(CLI + ["device", "retire", "rio-puente"], env=env,
                                 capture_output=True, text=True, timeout=WAIT)
        assert retired.returncode == 0, retired.stderr
        got = _wait_for(mosquitto_broker.port, patterns,
                        lambda got: not [t for t in got if river_id in t])
        assert len([t for t in got if t.endswith("/config")]) == 2
    finally:
        gateway.terminate()
        _, err = gateway.communicate(timeout=WAIT)
    assert gateway.returncode == 0, err
