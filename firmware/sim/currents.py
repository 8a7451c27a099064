"""The currents of each part of a simulated board, in mA per state, with where each figure comes from.

PC-side data for the energy model (firmware/sim/energy_model.py): firmware/sim/ is
never copied to a board (firmware/README.md), so these tables cost no heap.
Board figures are whole-board currents at the supply input the source
measured at (mostly 5 V USB; a switching regulator draws about 5/3.7 of
that from a 3.7 V cell for the same power, which the model does not
rescale). A radio's or sensor's figure is what it adds to the board's.
"Assumed" marks a figure no measurement or datasheet here backs: each says
what it rests on, so a measurement can replace it.

States: mcu active (running code), idle (time.sleep: awake, clocks on),
light, deep, dormant; wifi off, standby, join, idle (associated, power
save), tx; lora off, sleep, rx, tx; rs485 off, idle (receiver on), tx;
a sensor off (its power group's pin off), powered, converting.
"""

BOARDS = {
    # RP2040 Pico. active/idle: a bare Pico in MicroPython at 5 V draws about 26 mA (Pimoroni
    # forum topic 25317; mjoldfield.com 2021 "pico-power" measured 18 mA under CircuitPython).
    # light: "about 1.5mA when doing machine.lightsleep(5000)", dormant 0.9 mA for lightsleep()
    # (micropython commit b004e7e, Damien George, measured from USB on a Pico). rp2 deepsleep is
    # lightsleep then a reset (ports/rp2/modmachine.c mp_machine_deepsleep): the light figure.
    "pico": {"active": 26.0, "idle": 26.0, "light": 1.5, "deep": 1.5, "dormant": 0.9},
    # Pico W: 30-33 mA awake at 5 V on MicroPython v1.22.1 (tomjorquera/pico-micropython-lowpower-
    # workaround issue 17); 1.5 mA in lightsleep before Wi-Fi was started (ghubcoder/micropython-
    # pico-deepsleep issue 7; 1.2 mA in issue 8); the CYW43's share after a start is wifi:standby.
    "pico_w": {"active": 31.0, "idle": 31.0, "light": 1.5, "deep": 1.5, "dormant": 0.9},
    # Pico 2 W (RP2350): assumed the Pico W's; no MicroPython measurement of it found. MicroPython
    # up to 1.28 runs lightsleep on the RP2350 with the same clock gating as on the RP2040.
    "pico2_w": {"active": 31.0, "idle": 31.0, "light": 1.5, "deep": 1.5, "dormant": 0.9},
    # ESP32-DevKitC V4: 3.8 mA in deep sleep at 5 V, the regulator, USB bridge and LED included
    # (lucidar.me "power-consumption-of-esp32-devkitc-v4"; a DevKitC clone with an AMS1117 drew
    # 11.38 mA, kohacraft.com). light: that plus the chip's 0.8 mA light sleep (ESP32 Series
    # Datasheet, "Power Consumption by Power Modes"). active: 47 mA booting at 5 V (glenn20/upy-
    # esp32-experiments ESPNowvsWifiEnergyUsage: 3.32 mC in 70 ms) less that board's 15 mA floor,
    # plus the DevKitC's 3.8 mA; the datasheet's CPU at 160 MHz, radio off, is 27-44 mA.
    "esp32": {"active": 36.0, "idle": 36.0, "light": 4.6, "deep": 3.8, "dormant": 3.8},
    # ESP32-S3 DevKit: 31.7 mA awake and 8 uA in deep sleep at 3.3 V (lucidar.me "power-consumption-
    # of-esp32-s3-devkitm-1"); light about 1.9-2 mA measured on an S3 board (esp32.com topic 41048,
    # the flash kept powered), against the datasheet's 240 uA for the chip alone.
    "esp32s3": {"active": 31.7, "idle": 31.7, "light": 2.0, "deep": 0.008, "dormant": 0.008},
}

# What the MCU states count as: awake (the CPU runs) or asleep.
AWAKE = ("active", "idle")

_ESP32_WIFI = {
    # glenn20 ESPNowvsWifiEnergyUsage (MicroPython ESP32, 5 V): connect with DHCP 204.3 mC in
    # 1626 ms (126 mA) less the board's awake 47 mA; MQTT connect + publish 8.4 mC in 40 ms
    # (210 mA) less 47 mA, charged 20 ms per socket write (two packets in that measurement).
    # idle: associated in WIFI_PS_MIN_MODEM (ESP-IDF's default): assumed 20 mA, the receiver's
    # 95-100 mA (ESP32 Series Datasheet, RF current) listening for beacons a fifth of the time.
    "off": 0.0, "standby": 0.0, "join": 79.0, "idle": 20.0, "tx": 163.0,
}
WIFI = {
    "esp32": _ESP32_WIFI,
    "esp32s3": _ESP32_WIFI,  # assumed the ESP32's: no ESP32-S3 Wi-Fi measurement found
    # CYW43439 (Pico W, Pico 2 W). idle: "PM1/PM2 cost about 2mA in idle STA mode while
    # connected", 36 mA without power save (georgerobotics/cyw43-driver PR 126; MicroPython's
    # default pm is PM2). standby: lightsleep went from 1.5 to 2.2 mA once Wi-Fi had been started,
    # active(False) does not power the chip down (ghubcoder/micropython-pico-deepsleep issue 7).
    # join: assumed 40 mA, the 36 mA the chip draws listening without power save, a scan being
    # reception. tx: assumed the ESP32's measured 163 mA; no CYW43439 measurement found.
    "cyw43": {"off": 0.0, "standby": 0.7, "join": 40.0, "idle": 2.0, "tx": 163.0},
}
WIFI_CHIP = {"pico_w": "cyw43", "pico2_w": "cyw43", "esp32": "esp32", "esp32s3": "esp32s3"}
WIFI_TX_US = 20000  # one socket write's packet and its TCP ack on the air (glenn20, above)

# E32-868T20D class LoRa UART module (Ebyte user manual, electrical parameters): transmitting
# at 20 dBm 110-130 mA, receiving 11-17 mA (issue 12 quotes the same), sleep (mode 3) 2 uA.
# The spreading factor sets the air time (firmware/lora.py), not these currents.
LORA = {"off": 0.0, "sleep": 0.002, "rx": 14.0, "tx": 120.0}

# RS-485 transceiver (MAX485 class, MAX485 datasheet: 300 uA with the driver off, 500 uA on
# unloaded) driving a terminated line: "RS-485 line load 40 mA, only present when actively
# transmitting" (Campbell Scientific SDM-SIO1A specifications).
RS485 = {"off": 0.0, "idle": 0.3, "tx": 40.5}

SENSORS = {
    # A reed switch: no current but its pull-up's while a tip holds it closed (~0.1 s, 66 uA).
    "rain_gauge": {"off": 0.0, "powered": 0.0, "converting": 0.0},
    # 100k/100k divider across a 4 V cell, never switched: 20 uA.
    "battery": {"off": 0.0, "powered": 0.02, "converting": 0.02},
    # JSN-SR04T v2.0 specification: static current under 5 mA, working current 30 mA
    # (charged for the 50 ms measuring cycle of each ping).
    "ultrasonic_level": {"off": 0.0, "powered": 5.0, "converting": 30.0},
    # A 2-wire 4-20 mA transmitter draws its signal current from the loop all the time it is
    # powered: assumed mid-scale 12 mA; the loop supply's converter losses are not counted.
    "pressure_level_ma": {"off": 0.0, "powered": 12.0, "converting": 12.0},
    # MS5837-30BA datasheet: standby 0.1 uA, peak supply current during conversion 1.25 mA.
    "pressure_level_i2c": {"off": 0.0, "powered": 0.0001, "converting": 1.25},
    # DS18B20 datasheet rev 6: standby IDDS 750 nA, active IDD 1 mA during Convert T.
    "ds18b20": {"off": 0.0, "powered": 0.00075, "converting": 1.0},
    # Analog probe boards: DFRobot SEN0189 turbidity "40mA (MAX)"; pH, conductivity and DO
    # boards assumed 5-6 mA (their signal conditioning op-amps and references run all the time).
    "ph": {"off": 0.0, "powered": 5.0, "converting": 5.0},
    "turbidity": {"off": 0.0, "powered": 40.0, "converting": 40.0},
    "conductivity": {"off": 0.0, "powered": 6.0, "converting": 6.0},
    "dissolved_oxygen": {"off": 0.0, "powered": 5.0, "converting": 5.0},
    # Capacitive soil probe v1.2 (TLC555 oscillator): assumed 5 mA.
    "soil_moisture": {"off": 0.0, "powered": 5.0, "converting": 5.0},
    # ADXL345 rev G: 140 uA measuring at ODR >= 100 Hz (the driver leaves it measuring).
    "accel_adxl345": {"off": 0.0, "powered": 0.14, "converting": 0.14},
    # MPU-6000/6050 product specification rev 3.4: 3.9 mA with gyro and accelerometer on.
    "accel_mpu6050": {"off": 0.0, "powered": 3.9, "converting": 3.9},
    # Potentiometric crack gauge: assumed a 5 kohm track across 3.3 V, 0.66 mA.
    "crack_gauge": {"off": 0.0, "powered": 0.66, "converting": 0.66},
    # HX711 datasheet: under 1.5 mA converting continuously, under 1 uA powered down; plus the
    # bridge's excitation, assumed a 1 kohm load cell across the 4.3 V AVDD: 4.3 mA.
    "hx711": {"off": 0.0, "powered": 5.8, "converting": 5.8},
}
UNKNOWN_SENSOR = {"off": 0.0, "powered": 0.0, "converting": 0.0}


def floor_ma(board, sleep_mode):
    """The least the board itself draws in the site's sleep mode ("none": awake and idle)."""
    mcu = BOARDS[board]
    return mcu["idle" if sleep_mode == "none" else sleep_mode]
