"""The systemd units: accepted by ``systemd-analyze verify`` and hardened (exposure ≤ 2.0)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.config.loader import loads

UNITS = Path(__file__).resolve().parent.parent / "systemd"
UNIT_FILES = ["agentd.service", "agentd@.service"]
INSTALLED_BINARY = "/usr/local/bin/agentd"


def _systemd_analyze() -> str:
    """The tool, installing Debian's ``systemd`` package when running as root without it."""
    found = shutil.which("systemd-analyze")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "systemd"], check=False,
                       capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: install the Debian package `systemd`"
    return found


def _directives(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory) -> Path:
    """Copies of the units whose ExecStart names an executable that exists here
    (verify refuses a missing one): this checkout's ``agentd`` script."""
    agentd = Path(sys.executable).parent / "agentd"
    real = str(agentd if agentd.exists() else Path(sys.executable))
    target = tmp_path_factory.mktemp("units")
    for name in UNIT_FILES:
        text = (UNITS / name).read_text()
        assert INSTALLED_BINARY in text
        (target / name).write_text(text.replace(INSTALLED_BINARY, real))
    return target


@pytest.mark.parametrize("unit", ["agentd.service", "agentd@demo.service"])
def test_systemd_analyze_verify_accepts_the_unit(unit_dir, unit):
    result = subprocess.run([_systemd_analyze(), "verify", "--man=no", f"./{unit}"],
                            cwd=unit_dir, capture_output=True, text=True, timeout=120)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "agentd" in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


@pytest.mark.parametrize("unit", ["agentd.service", "agentd@demo.service"])
def test_security_exposure_is_at_most_two(unit_dir, unit):
    result = subprocess.run([_systemd_analyze(), "security", "--offline=yes", f"./{unit}"],
                            cwd=unit_dir, capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


@pytest.mark.parametrize("name", UNIT_FILES)
def test_unit_has_the_operational_contract(name):
    unit = _directives(name)
    expected = {"Type": "notify", "NotifyAccess": "main", "KillMode": "mixed",
                "OOMPolicy": "continue", "Restart": "on-failure", "RestartPreventExitStatus": "2",
                "ExecReload": "/bin/kill -HUP $MAINPID", "NoNewPrivileges": "yes",
                "ProtectSystem": "strict", "CapabilityBoundingSet": ""}
    assert {key: unit.get(key, [None])[-1] for key in expected} == expected
    assert unit["ExecStart"][0].startswith(f"{INSTALLED_BINARY} start /etc/agentd/")
    assert int(unit["WatchdogSec"][0]) > 0
    shutdown_timeout = loads('app = "m"').shutdown_timeout
    assert int(unit["TimeoutStopSec"][0]) > shutdown_timeout
    assert unit["RuntimeDirectory"][0].startswith("agentd")
    assert "@system-service" in unit["SystemCallFilter"]


def test_template_instance_gets_its_own_config_and_runtime_directory():
    unit = _directives("agentd@.service")
    assert unit["ExecStart"][0].endswith("/etc/agentd/%i.toml")
    assert unit["RuntimeDirectory"] == ["agentd/%i"]
