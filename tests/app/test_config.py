"""Configuration from the environment, in one place."""

from __future__ import annotations

import json

import pytest

from app.config import ConfigError, load


def test_production_refuses_to_start_without_secrets(tmp_path):
    # given production mode with no secrets in the environment
    env = {"STAMMKUNDE_ENV": "production", "INSTANCE_PATH": str(tmp_path)}

    # when the settings are loaded
    with pytest.raises(ConfigError) as error:
        load(env)

    # then the error names both missing secrets, and no dev secrets file was written
    assert "SECRET_KEY" in str(error.value) and "ENCRYPTION_KEY" in str(error.value)
    assert not (tmp_path / "dev-secrets.json").exists()


def test_development_generates_and_keeps_its_secrets(tmp_path):
    # given development mode without secrets
    env = {"INSTANCE_PATH": str(tmp_path)}

    # when the settings are loaded twice
    first, second = load(env), load(env)

    # then secrets are generated once, kept, and not world-readable
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["ENCRYPTION_KEY"] == second["ENCRYPTION_KEY"]
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("_case, url, expected", [
    ("default sqlite under instance", None, "sqlite:///{tmp}/stammkunde.db"),
    ("postgres scheme gets psycopg", "postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgresql scheme gets psycopg", "postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
])
def test_database_url(_case, url, expected, tmp_path):
    # given DATABASE_URL set or not
    env = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s", "ENCRYPTION_KEY": "k"}
    if url:
        env["DATABASE_URL"] = url

    # then the URL the app uses
    assert load(env)["DATABASE_URL"] == expected.format(tmp=tmp_path)


@pytest.mark.parametrize("_case, env, message", [
    ("port not a number", {"PORT": "abc"}, "PORT"),
    ("bad smtp security", {"SMTP_SECURITY": "tls13"}, "SMTP_SECURITY"),
    ("bad mode", {"STAMMKUNDE_ENV": "staging"}, "STAMMKUNDE_ENV"),
    ("negative retention", {"DELIVERY_RETENTION_DAYS": "-1"}, "DELIVERY_RETENTION_DAYS must be 0 or more days"),
])
def test_bad_values_are_clear_errors(_case, env, message, tmp_path):
    # when a setting is malformed
    with pytest.raises(ConfigError, match=message):
        load({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s", "ENCRYPTION_KEY": "k", **env})


def test_public_url_is_the_same_in_every_process_of_the_procfile(tmp_path):
    # given honcho's per-process ports (web 5000, worker 5100, clock 5200) and no PUBLIC_URL
    base = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s", "ENCRYPTION_KEY": "k"}

    # when each process loads its settings
    urls = {load({**base, "PORT": port})["PUBLIC_URL"] for port in ("5000", "5100", "5200")}

    # then e-mail links point at one address, the web server's default one
    assert urls == {"http://127.0.0.1:5000"}


def test_settings_fall_back_to_what_make_run_recorded(tmp_path):
    # given a running `make run` that recorded its URLs, and a second terminal with none set
    (tmp_path / "make-run.json").write_text(json.dumps(
        {"redis_url": "redis://127.0.0.1:6390/0", "web_url": "http://127.0.0.1:8123",
         "public_url": "https://loyalty.example"}))
    env = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s", "ENCRYPTION_KEY": "k"}

    # when settings are loaded without and with the variables set
    recorded = load(env)
    explicit = load({**env, "REDIS_URL": "redis://elsewhere:6379/1", "PUBLIC_URL": "https://shop.example/"})

    # then the recorded URLs are used, and the environment wins over them
    assert (recorded["REDIS_URL"], recorded["WEB_URL"], recorded["PUBLIC_URL"]) == (
        "redis://127.0.0.1:6390/0", "http://127.0.0.1:8123", "https://loyalty.example")
    assert (explicit["REDIS_URL"], explicit["PUBLIC_URL"]) == ("redis://elsewhere:6379/1", "https://shop.example")


def test_no_run_file_means_no_redis_and_the_default_web_url(tmp_path):
    # given no `make run` running
    env = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s", "ENCRYPTION_KEY": "k", "PORT": "8123"}

    # then there is no Redis to fall back to, and the demo posts to PORT
    settings = load(env)
    assert (settings["REDIS_URL"], settings["WEB_URL"]) == (None, "http://127.0.0.1:8123")


def test_a_process_loads_its_settings_once(tmp_path, monkeypatch):
    # given a process whose settings were loaded (a worker's first job)
    from app import config

    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PUBLIC_URL", "https://first.example")
    first = config.settings(reload=True)

    # when the environment changes afterwards
    monkeypatch.setenv("PUBLIC_URL", "https://second.example")

    # then the process keeps what it loaded, until it is told to load again (an app being built)
    assert config.settings() is first and first["PUBLIC_URL"] == "https://first.example"
    assert config.settings(reload=True)["PUBLIC_URL"] == "https://second.example"
    monkeypatch.undo()
    config.settings(reload=True)
