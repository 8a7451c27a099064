"""Device models of the simulated board, and `wire` that attaches them for a site.

wire(board, site_config) makes the model of every sensor in the config's
"sensors" list and attaches it where firmware/sensors.py will look (the
same pin roles, resolved the same way), so a scenario runner needs one call.
It returns {sensor name: model}; the scenario drives models through it (the
rain gauge's tip(), a name in bus.faults for a dead sensor) and sets the
physical quantities in bus.world.
"""
from firmware.sim import bus

chip = ["rp2"]  # whose ADC the board has (firmware/sim/adc.py): "rp2", "esp32" or "esp32s3"


def _pin(board, cfg, role):
    pins = cfg.get("pins") or {}
    return pins[role] if role in pins else board.PINS.get(role)


def _model(board, cfg):
    kind = cfg["type"]
    name = cfg["name"]
    if kind == "rain_gauge":
        from firmware.sim.devices.rain import TippingBucket
        return TippingBucket(name, _pin(board, cfg, "rain"))
    if kind == "battery":
        from firmware.sim.devices.divider import Divider
        model = Divider(name, cfg.get("ratio", getattr(board, "BATTERY_DIVIDER", 2.0)))
        bus.adc_attach(_pin(board, cfg, "battery"), model.volts)
        return model
    if kind == "ultrasonic_level":
        from firmware.sim.devices.jsn_sr04t import Echo
        model = Echo(name, cfg["mount_height_m"])
        bus.pin_attach(_pin(board, cfg, "trigger"), model)
        bus.pin_attach(_pin(board, cfg, "echo"), model)
        return model
    if kind == "pressure_level_ma":
        from firmware.sim.devices.loop_4_20ma import Transmitter
        model = Transmitter(name, cfg["range_m"], cfg.get("shunt_ohm", 150.0), cfg.get("offset_m", 0.0))
        bus.adc_attach(_pin(board, cfg, "adc0"), model.volts)
        return model
    if kind == "pressure_level_i2c":
        from firmware.sim.devices.ms5837 import MS5837
        model = MS5837(name, cfg.get("bars", 30), cfg.get("density", 997.0), cfg.get("offset_m", 0.0))
        bus.i2c_attach(_pin(board, cfg, "i2c0"), cfg.get("addr", 0x76), model)
        return model
    if kind == "ds18b20":
        from firmware.sim.devices.ds18b20 import DS18B20
        key = "air_temp_c" if cfg.get("output") == "air_temp" else "water_temp_c"
        rom = cfg.get("rom")
        model = DS18B20(name, key, None if rom is None else bytes(int(rom[i:i + 2], 16) for i in range(0, 16, 2)))
        pin = _pin(board, cfg, "onewire")
        bus.onewire_attach(pin, tuple(bus.onewire_devices(pin)) + (model,))
        return model
    if kind in ("ph", "turbidity", "conductivity", "dissolved_oxygen"):
        from firmware.sim.devices.probes import Probe
        model = Probe(name, kind)
        bus.adc_attach(_pin(board, cfg, "adc0"), model.volts)
        return model
    if kind == "soil_moisture":
        from firmware.sim.devices.probes import SoilProbe
        model = SoilProbe(name, cfg["dry_v"], cfg["wet_v"])
        bus.adc_attach(_pin(board, cfg, "adc0"), model.volts)
        return model
    if kind in ("accel_adxl345", "accel_mpu6050"):
        from firmware.sim.devices.accel import ADXL345, MPU6050
        if kind == "accel_adxl345":
            model, addr = ADXL345(name), cfg.get("addr", 0x53)
        else:
            model, addr = MPU6050(name), cfg.get("addr", 0x68)
        bus.i2c_attach(_pin(board, cfg, "i2c0"), addr, model)
        return model
    if kind == "crack_gauge":
        from firmware.sim.devices.crack import CrackGauge
        model = CrackGauge(name, cfg.get("travel_mm", 25.0), cfg.get("zero_mm", 0.0))
        bus.adc_attach(_pin(board, cfg, "adc0"), model.volts)
        return model
    if kind == "hx711":
        from firmware.sim.devices.hx711 import HX711
        model = HX711(name, _pin(board, cfg, "hx711_sck"), cfg.get("tare", 0), cfg["scale"],
                      "load_kg" if cfg.get("output", "load") == "load" else "strain_ue", sps=cfg.get("sps", 10))
        bus.pin_attach(_pin(board, cfg, "hx711_sck"), model)
        bus.pin_attach(_pin(board, cfg, "hx711_dt"), model)
        return model
    raise ValueError("no model for sensor type %r" % (kind,))


def wire(board, site_config):
    """Attach a model for every sensor of the site; {name: model}. The ADC reads as the board's chip does.
    A sensor or a LoRa module on a power group is on that group's rail (bus.Rail), off until
    the firmware drives the group's pin."""
    chip[0] = board.NAME if board.NAME in ("esp32", "esp32s3") else "rp2"
    rails = {}
    for name, spec in (site_config.get("power") or {}).items():
        rails[name] = bus.Rail(spec["pin"], spec.get("on", 1))
        bus.pin_attach(spec["pin"], rails[name])
    t = site_config.get("transport") or {}
    if t.get("radio"):
        from firmware.sim.devices.lora_uart import attach
        module = attach(board, t)
        module.rail = None
        if t.get("power") in rails:
            rails[t["power"]].attach(module)
    models = {}
    for cfg in site_config.get("sensors", ()):
        models[cfg["name"]] = _model(board, cfg)
        if cfg.get("power") in rails:
            rails[cfg["power"]].attach(models[cfg["name"]])
    return models
