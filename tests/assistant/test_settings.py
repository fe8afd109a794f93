"""Every numeric setting goes through one range check, whatever its source (issue 20, defect 1)."""
from __future__ import annotations

import pytest

from assistant.errors import OnboardError
from assistant.settings import LIMITS, Settings, load_settings


@pytest.mark.parametrize("argv,needle", [
    (["ask", "--ctx", "-5", "hi"], "n_ctx"),
    (["ask", "--ctx", "0", "hi"], "n_ctx"),
    (["ask", "--max-tokens", "-1", "hi"], "max_tokens"),
    (["ask", "--max-tokens", "0", "hi"], "max_tokens"),
    (["ask", "--threads", "0", "hi"], "n_threads"),
    (["chat", "--max-tokens", "-3"], "max_tokens"),
    (["ask", "--k", "0", "hi"], "top_k"),
])
def test_bad_numbers_on_the_command_line_fail_fast(run_cli, argv, needle):
    code, out, err = run_cli(*argv)
    assert code != 0 and not out
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("line,needle", [
    ("n_ctx = -5", "n_ctx must be"),
    ("n_ctx = 3.7", "whole number"),
    ("n_ctx = true", "whole number"),
    ("max_tokens = -1", "max_tokens must be"),
    ("n_threads = 0", "n_threads must be"),
    ("temperature = -0.5", "temperature must be"),
    ("kv_cache_mb = -1", "kv_cache_mb must be"),
])
def test_bad_numbers_in_config_toml_name_the_file(onboard_home, run_cli, line, needle):
    (onboard_home / "config.toml").write_text(line + "\n", encoding="utf-8")
    with pytest.raises(OnboardError, match=needle) as e:
        load_settings()
    assert "config.toml" in str(e.value)
    code, _, err = run_cli("ask", "hi")
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("raw", ["-5", "3.7", "lots", "1e9"])
def test_bad_numbers_in_the_environment(monkeypatch, raw):
    monkeypatch.setenv("ONBOARD_N_CTX", raw)
    with pytest.raises(OnboardError, match="ONBOARD_N_CTX: setting n_ctx"):
        load_settings()


def test_replace_and_direct_construction_are_checked_too():
    s = load_settings()
    with pytest.raises(OnboardError, match="n_ctx"):
        s.replace(n_ctx=-5)
    with pytest.raises(OnboardError, match="whole number"):
        Settings(home=s.home, max_tokens=3.7)
    assert s.replace(n_ctx=2048, n_threads=1, max_tokens=1).n_ctx == 2048


def test_good_values_from_env_and_config(onboard_home, monkeypatch):
    (onboard_home / "config.toml").write_text("n_ctx = 2048\ntemperature = 0\n", encoding="utf-8")
    monkeypatch.setenv("ONBOARD_MAX_TOKENS", "64")
    s = load_settings()
    assert (s.n_ctx, s.temperature, s.max_tokens) == (2048, 0.0, 64)
    assert isinstance(s.temperature, float)


def test_every_numeric_setting_has_a_range():
    numeric = [f for f, t in Settings.__annotations__.items() if t in ("int", "float")]
    assert set(numeric) <= set(LIMITS), set(numeric) - set(LIMITS)
