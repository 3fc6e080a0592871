"""``up`` checks the app before starting anything: ASGI callable, settings errors, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels_scale.net import free_port
from channels_scale.stack.app import NotAnASGIApp, check_asgi
from tests.stackrunner import run_cli, tutorial_project


def _up(project: Path, app: str, *flags: str, cwd: Path | None = None) -> tuple[int, str]:
    run = project / "run"
    done = run_cli(
        "up", "--app", app, "--settings", "mysite.settings", "--run-dir", str(run),
        "--port", str(free_port()), "--workers", "1", *flags, cwd=cwd or project,
    )  # fmt: skip
    assert not (run / "supervisord.conf").exists(), "a config was written for a refused app"
    return done.returncode, done.stderr.strip()


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (
            "mysite.wsgi:application",
            "mysite.wsgi:application is a WSGI application; channels-scale runs ASGI "
            "applications: pass your project's asgi.py, e.g. --app mysite.asgi:application",
        ),
        ("mysite.settings:SECRET_KEY", "mysite.settings:SECRET_KEY is a str, not an ASGI"),
    ],
)
def test_a_target_that_is_not_asgi_is_refused_in_one_line(
    tmp_path: Path, app: str, expected: str
) -> None:
    code, err = _up(tutorial_project(tmp_path), app)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert expected in err


def test_settings_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    project = tutorial_project(tmp_path, settings_tail="\nDEBUG = (\n")
    code, err = _up(project, "mysite.asgi:application")
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert f"{project / 'mysite' / 'settings.py'}, line " in err
    assert "SyntaxError" in err


def test_settings_that_raise_name_the_line(tmp_path: Path) -> None:
    project = tutorial_project(tmp_path, settings_tail="\nTIME_ZONE = undefined_name\n")
    code, err = _up(project, "mysite.asgi:application")
    assert code == 2
    assert f"{project / 'mysite' / 'settings.py'}, line 8: NameError" in err


def test_wrong_directory_points_at_pythonpath(tmp_path: Path) -> None:
    project = tutorial_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, err = _up(project, "mysite.asgi:application", cwd=elsewhere)
    assert code == 2
    assert "No module named 'mysite'" in err and "--pythonpath" in err
    code, err = _up(project, "mysite.asgi:application", "--pythonpath", str(project),
                    "--frobnicate", cwd=elsewhere)  # fmt: skip
    assert "unrecognized arguments: --frobnicate" in err  # the flag itself is accepted


def test_the_public_default_secret_key_is_refused(tmp_path: Path) -> None:
    project = tutorial_project(tmp_path, secret="dev-only-insecure-key-change-me-in-production")
    code, err = _up(project, "mysite.asgi:application")
    assert code == 2
    assert "SECRET_KEY is the example's public default" in err
    assert "--insecure-secret-key" in err


class _Wsgi:
    def __call__(self, environ: object, start_response: object) -> list[bytes]:
        return []


class _Asgi:
    async def __call__(self, scope: object, receive: object, send: object) -> None:
        return None


async def _asgi_function(scope: object, receive: object, send: object) -> None:
    return None


def _wsgi_function(environ: object, start_response: object) -> list[bytes]:
    return []


@pytest.mark.parametrize("app", [_Asgi(), _asgi_function], ids=["instance", "function"])
def test_asgi_callables_pass(app: object) -> None:
    assert check_asgi(app, "m:app") is app


def test_channels_router_passes() -> None:
    from channels.routing import ProtocolTypeRouter

    router = ProtocolTypeRouter({"http": _Asgi()})
    assert check_asgi(router, "m:app") is router


@pytest.mark.parametrize(
    ("app", "expected"),
    [(_Wsgi(), "WSGI"), (_wsgi_function, "WSGI"), ("text", "is a str"), (None, "is a NoneType")],
)
def test_non_asgi_targets_fail(app: object, expected: str) -> None:
    with pytest.raises(NotAnASGIApp, match=expected):
        check_asgi(app, "m:app")


def test_the_probe_explains_a_missing_module_without_a_traceback() -> None:
    from channels_scale.stack.probe import explain

    line = explain(ModuleNotFoundError("No module named 'mysite'", name="mysite"))
    assert line.startswith("No module named 'mysite': run up from the directory that holds")
    assert "\n" not in line and "--pythonpath DIR" in line
