"""The settings object: typed values, one clear error per missing/malformed variable, no leaks."""

import logging
import pickle

import pytest

from edge_deploy.config import Secret, Settings
from edge_deploy.crypto.keyring import key_env_vars
from edge_deploy.errors import ConfigError

SECRET = "s3cr3t-value-that-must-never-leak"

FULL_ENV = {
    "LAKEFS_ENDPOINT": "https://lakefs.example.com/",
    "LAKEFS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "LAKEFS_SECRET_ACCESS_KEY": SECRET,
    "MONGODB_URI": f"mongodb://deployer:{SECRET}@mongo.example.com:27017",
    "REDIS_URL": f"redis://:{SECRET}@redis.example.com:6379/0",
    "EDGE_REGISTRY": "myacr.azurecr.io/edge",
    "EDGE_REGISTRY_USERNAME": "sp-id",
    "EDGE_REGISTRY_PASSWORD": SECRET,
    "EDGE_SEAL_KEY_ID": "edge-2026",
}


def test_full_environment_reads_into_typed_settings():
    settings = Settings.from_env(FULL_ENV)
    lakefs = settings.require_lakefs()
    assert lakefs.api_url == "https://lakefs.example.com/api/v1"
    assert lakefs.s3_endpoint == "https://lakefs.example.com"  # the gateway defaults to the server
    assert lakefs.secret_access_key.reveal() == SECRET
    registry = settings.require_registry()
    assert (registry.host, registry.username, registry.insecure) == ("myacr.azurecr.io", "sp-id", False)
    assert settings.mongodb_uri.reveal().startswith("mongodb://deployer:")


def test_secrets_never_show_in_repr_str_or_logs(caplog):
    settings = Settings.from_env(FULL_ENV)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("settings: %s / %r / %s", settings, settings, settings.require_lakefs())
    for text in (repr(settings), str(settings), repr(settings.require_lakefs()), repr(settings.require_registry())):
        assert SECRET not in text
        assert "********" in text
    assert SECRET not in caplog.text


def test_secret_refuses_to_be_pickled():
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(SECRET))


@pytest.mark.parametrize(
    ("missing", "ask", "named"),
    [
        ("LAKEFS_ENDPOINT", "require_lakefs", "LAKEFS_ENDPOINT"),
        ("LAKEFS_SECRET_ACCESS_KEY", "require_lakefs", "LAKEFS_SECRET_ACCESS_KEY"),
        ("EDGE_REGISTRY", "require_registry", "EDGE_REGISTRY"),
        ("EDGE_REGISTRY_PASSWORD", "require_registry", "EDGE_REGISTRY_PASSWORD"),
    ],
)
def test_a_stage_asking_for_a_missing_value_gets_the_variable_name(missing, ask, named):
    env = {k: v for k, v in FULL_ENV.items() if k != missing}
    settings = Settings.from_env(env)  # loading never fails for a value only some stages need
    with pytest.raises(ConfigError, match=named) as error:
        getattr(settings, ask)()
    assert SECRET not in str(error.value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LAKEFS_ENDPOINT", "lakefs.example.com", "LAKEFS_ENDPOINT must be a http/https URL"),
        ("MONGODB_URI", f"http://user:{SECRET}@host", "MONGODB_URI must be a mongodb/mongodb\\+srv URL"),
        ("REDIS_URL", f"{SECRET}", "REDIS_URL must be a redis/rediss/unix URL"),
        ("EDGE_REGISTRY", "https://myacr.azurecr.io", "EDGE_REGISTRY is a host"),
        ("EDGE_REGISTRY_INSECURE", "maybe", "EDGE_REGISTRY_INSECURE must be true or false"),
    ],
)
def test_malformed_values_fail_at_load_naming_the_variable_and_hiding_secrets(name, value, expected):
    with pytest.raises(ConfigError, match=expected) as error:
        Settings.from_env({**FULL_ENV, name: value})
    assert SECRET not in str(error.value)


def test_secret_from_a_mounted_file(tmp_path):
    secret_file = tmp_path / "lakefs-secret"
    secret_file.write_text(SECRET + "\n")
    env = {k: v for k, v in FULL_ENV.items() if k != "LAKEFS_SECRET_ACCESS_KEY"}
    settings = Settings.from_env({**env, "LAKEFS_SECRET_ACCESS_KEY_FILE": str(secret_file)})
    assert settings.require_lakefs().secret_access_key.reveal() == SECRET


def test_secret_given_twice_or_unreadable_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="LAKEFS_SECRET_ACCESS_KEY or LAKEFS_SECRET_ACCESS_KEY_FILE, not both"):
        Settings.from_env({**FULL_ENV, "LAKEFS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "x")})
    with pytest.raises(ConfigError, match="EDGE_REGISTRY_PASSWORD_FILE: cannot read"):
        Settings.from_env({"EDGE_REGISTRY_PASSWORD_FILE": str(tmp_path / "missing")})


def test_dotenv_file_fills_in_and_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# deployment settings\n"
        "export LAKEFS_ENDPOINT=http://127.0.0.1:8000\n"
        "LAKEFS_ACCESS_KEY_ID='from-file'\n"
        'LAKEFS_SECRET_ACCESS_KEY="quoted secret"\n'
    )
    settings = Settings.from_env({"LAKEFS_ACCESS_KEY_ID": "from-env"}, dotenv=dotenv)
    lakefs = settings.require_lakefs()
    assert (lakefs.endpoint, lakefs.access_key_id) == ("http://127.0.0.1:8000", "from-env")
    assert lakefs.secret_access_key.reveal() == "quoted secret"


def test_malformed_dotenv_line_names_file_and_line(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("LAKEFS_ENDPOINT=http://x\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=VALUE"):
        Settings.from_env({}, dotenv=dotenv)


def test_embedded_defaults_when_nothing_is_configured():
    settings = Settings.from_env({})
    assert settings.mongodb_uri is None and settings.redis_url is None
    assert settings.work_dir.name == "edge-deploy"


def test_key_variables_map_to_key_ids_without_reading_values():
    env = {"EDGE_KEY_EDGE_2026": "x", "EDGE_KEY_DIR": "/keys", "EDGE_KEY_OLD_FILE": "/k", "OTHER": "y"}
    assert key_env_vars(env) == {"edge-2026": "EDGE_KEY_EDGE_2026"}
