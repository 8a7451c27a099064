"""`huaico service install`: the gateway as a systemd service, and the steps
that put it there, shown before any is taken.

The unit runs `huaico run` as a system user of its own (not root: it parses
bytes from radios), in the serial group so it can open /dev/ttyUSB0, with
its data in StateDirectory= (/var/lib/NAME, created by systemd and owned by
that user). Type=notify with WatchdogSec: `huaico run` says READY=1 once it
listens and pings the watchdog while its writer makes progress
(huaico.service.sdnotify), so a hung gateway is restarted instead of looking alive.
Restart=always with no start limit: a gateway that gives up after five
failed starts during a power flicker warns nobody of the flood that follows.
ExecStartPre runs `huaico init`, which only creates what is missing and
applies pending migrations, so a fresh machine needs no separate set-up.
"""
import grp
import os
import pathlib
import pwd
import shlex
import shutil
import subprocess
import sys

UNIT_DIR = "/etc/systemd/system"
SERIAL_GROUP = "dialout"  # Debian's and Raspberry Pi OS's group for /dev/tty{USB,ACM,AMA}*
WATCHDOG_S = 60


class UnitError(RuntimeError):
    """The service cannot be installed as asked (says what to do instead)."""


def executable():
    """The absolute path of the running `huaico` command."""
    found = shutil.which("huaico", path=os.path.dirname(sys.executable)) or shutil.which("huaico")
    if not found:
        raise UnitError("cannot find the `huaico` command; install huaico with pipx "
                        "(see the README) and run this again")
    return os.path.abspath(found)


def render(exe, name="huaico", user="huaico", serial_group=SERIAL_GROUP,
           watchdog_s=WATCHDOG_S):
    home = "/var/lib/" + name
    quoted = shlex.quote(exe)
    return """\
# Written by `huaico service install`; `huaico service unit` prints it again.
[Unit]
Description=huaico flood-warning gateway
After=network-online.target time-sync.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
User={user}
Group={user}
SupplementaryGroups={group}
Environment=HUAICO_HOME={home}
StateDirectory={name}
StateDirectoryMode=0700
UMask=0077
ExecStartPre={exe} init
ExecStart={exe} run
Restart=always
RestartSec=10
WatchdogSec={watchdog}
TimeoutStopSec=60
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
""".format(user=user, group=serial_group, home=home, name=name, exe=quoted,
           watchdog=watchdog_s)


def _user_exists(user):
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def _group_exists(group):
    try:
        grp.getgrnam(group)
        return True
    except KeyError:
        return False


def plan(exe, name="huaico", user="huaico", serial_group=SERIAL_GROUP, unit_dir=UNIT_DIR,
         start=True, watchdog_s=WATCHDOG_S):
    """[(description, action)]: the steps install() takes, in order; an
    action is a command (argv) or the unit file's path to write."""
    if exe.startswith(("/home/", "/root/")):
        raise UnitError("%s is in a home directory, which the service cannot read "
                        "(ProtectHome=yes); install huaico system-wide: `sudo PIPX_HOME=/opt/pipx "
                        "PIPX_BIN_DIR=/usr/local/bin pipx install huaico-*.whl`" % exe)
    if not _group_exists(serial_group):
        raise UnitError("no group %r on this machine (the group owning the serial ports; "
                        "see `ls -l /dev/ttyUSB0`); pass --serial-group" % serial_group)
    steps = []
    if not _user_exists(user):
        steps.append(("create the system user %s (no login, no home of its own)" % user,
                      ["useradd", "--system", "--user-group", "--no-create-home",
                       "--home-dir", "/var/lib/" + name, "--shell", "/usr/sbin/nologin", user]))
    unit = pathlib.Path(unit_dir) / (name + ".service")
    steps.append(("write %s (runs `%s run` as %s, groups %s, data in /var/lib/%s, "
                  "watchdog %d s)" % (unit, exe, user, serial_group, name, watchdog_s), unit))
    steps.append(("reload systemd", ["systemctl", "daemon-reload"]))
    steps.append(("start now and at every boot" if start else "start at every boot",
                  ["systemctl", "enable"] + (["--now"] if start else []) + [name + ".service"]))
    return steps


def install(steps, unit_text, echo):
    """Take the steps of plan(); each is echoed as it is taken."""
    for description, argv in steps:
        echo("- " + description)
        if isinstance(argv, pathlib.Path):
            path = argv
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(unit_text, encoding="utf-8")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            continue
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise UnitError("`%s` failed: %s" % (" ".join(argv),
                                                 (done.stderr or done.stdout).strip()))
