"""Prometheus metrics of a real `huaico run` fetched over HTTP on 127.0.0.1
and parsed with prometheus_client's own parser: stored and rejected frames,
the queue, each device's last-frame age and battery, the outbox and the
active alerts, after signed and garbage frames over UDP."""
import os
import socket
import subprocess
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from huaico import version
from tests.test_run import CLI, WAIT


def _free_port(kind):
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _samples(url):
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_page_over_http(gateway_home):
    board = gateway_home.add("rg1", site="Quebrada Alta")
    gateway_home.add("silent", site="Almacen")
    udp, http = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    env = dict(os.environ, HUAICO_HOME=str(gateway_home.path), PYTHONPATH=os.getcwd())
    gateway = subprocess.Popen(CLI + ["run", "--udp", "127.0.0.1:%d" % udp, "--metrics",
                                      "127.0.0.1:%d" % http, "--status-every", "3600"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = "http://127.0.0.1:%d/metrics" % http
    try:
        deadline = time.monotonic() + WAIT
        while True:
            line = gateway.stderr.readline()
            assert line, "gateway ended early"
            if "event=metrics" in line:
                assert "url=%s" % url in line, line
                break
            assert time.monotonic() < deadline
        now = int(time.time())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.settimeout(5)
            for n in range(3):
                sender.sendto(board.frame([(1, 0, 0, 2, 0), (19, 0, 0, 3800 + n, 0)], time=now),
                              ("127.0.0.1", udp))
                sender.recv(256)  # the ack: stored
            sender.sendto(b"\x00garbage", ("127.0.0.1", udp))
        while True:
            found = _samples(url)
            if found.get(("huaico_rejected_frames_total", (("reason", "structure"),))):
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.1)
    finally:
        gateway.terminate()
        _, err = gateway.communicate(timeout=WAIT)
    assert gateway.returncode == 0, err
    assert found[("huaico_frames_stored_total", ())] == 3
    assert found[("huaico_readings_stored_total", ())] == 6
    assert found[("huaico_writer_queue_depth", ())] == 0
    labels = (("device", "rg1"), ("site", "Quebrada Alta"))
    assert 0 <= found[("huaico_device_last_frame_age_seconds", labels)] < WAIT
    assert found[("huaico_device_battery_volts", labels)] == 3.802
    # Never heard: no age rather than a made-up one.
    assert not [key for key in found if ("device", "silent") in key[1]]
    assert found[("huaico_outbox_oldest_pending_age_seconds", ())] == 0
    assert found[("huaico_build_info", (("version", version.installed()),))] == 1


def test_a_port_in_use_is_a_one_line_error(gateway_home):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, HUAICO_HOME=str(gateway_home.path), PYTHONPATH=os.getcwd())
        done = subprocess.run(CLI + ["run", "--udp", "127.0.0.1:%d" % _free_port(
            socket.SOCK_DGRAM), "--metrics", "127.0.0.1:%d" % port, "--for", "5"],
            env=env, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: cannot listen for metrics on 127.0.0.1:%d: [Errno 98] Address "
                      "already in use" % port], done.stderr
