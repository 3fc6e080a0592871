"""The built distribution and fresh virtualenvs with the wheel installed, shared by the session.

``uv build`` makes the sdist and, from it, the wheel (as CI and a release would); each virtualenv
gets the wheel with the locked versions as constraints, no dev dependencies, and is used through
its own interpreter and console script from a directory outside the checkout, with the dev
environment's ``bin`` off ``PATH``: nothing of ``src/`` or of the dev environment leaks in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path.home() / ".local/bin"))
    assert found, "uv is not installed: run ./scripts/install"
    return found


class Venv:
    """A virtualenv as a user would have it activated: its ``bin`` first on ``PATH``."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir
        self.python = root / "bin" / "python"
        self.cli = str(root / "bin" / "channels-scale")
        dev_bin = str(Path(sys.executable).parent)
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != dev_bin]
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PATH")
        }
        env["PATH"] = os.pathsep.join([str(root / "bin"), *path])
        env["VIRTUAL_ENV"] = str(root)
        self.env = env

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def python_code(self, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.python), "-c", code, *args)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel ``uv build`` makes (the wheel built from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([_uv(), "build", "--quiet", "-o", str(out), str(ROOT)], check=True, timeout=120)
    # The locked versions, as constraints only (they pin, they add nothing): the venvs get what
    # uv.lock says, from uv's cache, as a user installing today would get the same set.
    locked = subprocess.run(
        [_uv(), "export", "--frozen", "--all-extras", "--no-dev", "--no-emit-project",
         "--no-hashes", "--quiet"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    (out / "constraints.txt").write_text(locked)
    return out


@pytest.fixture(scope="session")
def wheel(dist: Path) -> Path:
    (built,) = dist.glob("channels_scale-*.whl")
    return built


def _venv(tmp: Path, requirement: str, wheel: Path) -> Venv:
    root = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(root / "bin" / "python"),
         "--constraint", str(wheel.parent / "constraints.txt"), requirement],
        check=True, timeout=120,
    )  # fmt: skip
    work = tmp / "elsewhere"
    work.mkdir()
    return Venv(root, work)


@pytest.fixture(scope="session")
def base_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel alone: what ``pip install channels-scale`` gives a Django project."""
    return _venv(tmp_path_factory.mktemp("base"), str(wheel), wheel)


@pytest.fixture(scope="session")
def server_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel with ``[server]`` only: what ``channels-scale up`` needs."""
    return _venv(
        tmp_path_factory.mktemp("server"), f"channels-scale[server] @ {wheel.as_uri()}", wheel
    )


@pytest.fixture(scope="session")
def tutorial_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """``[server,daphne]``: the Channels tutorial installs ``channels[daphne]`` and lists
    ``daphne`` in ``INSTALLED_APPS``."""
    return _venv(
        tmp_path_factory.mktemp("tutorial"),
        f"channels-scale[server,daphne] @ {wheel.as_uri()}",
        wheel,
    )
