"""The `agentd` entry point answers --version and --help from a checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from supervisor import __version__

AGENTD = [sys.executable, str(Path(__file__).resolve().parent.parent / "bin" / "agentd")]


def test_agentd_version_prints_the_package_version() -> None:
    done = subprocess.run([*AGENTD, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"agentd, version {__version__}"


def test_agentd_help_lists_the_dev_broker_command() -> None:
    done = subprocess.run([*AGENTD, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "dev-broker" in done.stdout


def test_python_dash_m_supervisor_cli_is_the_agentd_command() -> None:
    done = subprocess.run([sys.executable, "-m", "supervisor.cli", "--version"],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"agentd, version {__version__}"


def test_python_dash_m_supervisor_is_the_agentd_command() -> None:
    root = Path(__file__).resolve().parent.parent
    version = subprocess.run([sys.executable, "-m", "supervisor", "--version"],
                             capture_output=True, text=True, timeout=60, cwd=root)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"agentd, version {__version__}"
    helped = subprocess.run([sys.executable, "-m", "supervisor", "--help"],
                            capture_output=True, text=True, timeout=60, cwd=root)
    assert helped.returncode == 0, helped.stderr
    assert "Usage: agentd" in helped.stdout and "dev-broker" in helped.stdout
