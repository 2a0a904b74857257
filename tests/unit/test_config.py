"""core.config: loading, ${VAR} expansion, and errors that name file + key path."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.config import Config, ProviderConfig, find_config_path, hostport, load_config
from core.errors import ConfigError, MultisignerError

SECRET = "s3cr3t-api-key-value"

FULL = """\
[state]
url = "sqlite:///multisigner.db"

[[providers]]
name = "p0"
type = "powerdns"
api_url = "http://127.0.0.1:8081/"
api_key = "${P0_API_KEY}"
server_id = "localhost"
nameservers = ["127.0.0.1:5301", "[::1]:5301"]
ns_names = ["ns1.p0.example"]
timeout = "30s"

[[providers]]
name = "p1"
type = "powerdns"
api_url = "https://pdns.p1.example:8443"
api_key = "literal-key-1"
server_id = "srv1"
nameservers = ["127.0.0.1:5302"]
ns_names = ["ns1.p1.example."]

[[providers]]
name = "p2"
type = "powerdns"
api_url = "http://127.0.0.1:8083"
api_key = "literal-key-2"
nameservers = ["127.0.0.1"]

[[zones]]
name = "example.test"
model = 2
signers = ["p0", "p1", "p2"]

[zones.parent]
type = "cds-scan"
nameservers = ["127.0.0.1:5300"]

[zones.policy]
algorithm = "ecdsap256sha256"
import_ksks = false
zsk_lifetime = "90d"
ksk_lifetime = "365d"
signature_validity = "14d"
signature_refresh = "7d"
propagation_delay = "5m"
safety_margin = "1h30m"
"""


def write(tmp_path: Path, text: str, name: str = "multisigner.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(message: str) -> list[str]:
    """The per-key lines of an 'invalid configuration' message."""
    return message.split("\n  ")[1:]


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: "), "every config error names the file first"
    return info.value


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P0_API_KEY", SECRET)


# --- a valid file -------------------------------------------------------------------------


def test_full_config_loads_with_normalised_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert isinstance(config, Config)
    assert config.state.url == "sqlite:///multisigner.db"
    assert [p.name for p in config.providers] == ["p0", "p1", "p2"]
    p0 = config.provider("p0")
    assert p0.api_url == "http://127.0.0.1:8081"  # trailing slash dropped
    assert p0.api_key.get_secret_value() == SECRET  # ${P0_API_KEY} expanded
    assert p0.nameservers == ["127.0.0.1:5301", "[::1]:5301"]
    assert p0.ns_names == ["ns1.p0.example."]  # made absolute
    assert p0.timeout == timedelta(seconds=30)
    assert config.provider("p1").server_id == "srv1"
    p2 = config.provider("p2")
    assert (p2.server_id, p2.timeout, p2.ns_names) == ("localhost", timedelta(seconds=10), [])
    zone = config.zones[0]
    assert zone.name == "example.test."
    assert zone.model == 2
    assert zone.signers == ["p0", "p1", "p2"]
    assert zone.parent.type == "cds-scan"
    assert zone.parent.nameservers == ["127.0.0.1:5300"]
    policy = zone.policy
    assert policy.algorithm == "ECDSAP256SHA256"
    assert policy.import_ksks is False
    assert policy.zsk_lifetime == timedelta(days=90)
    assert policy.ksk_lifetime == timedelta(days=365)
    assert policy.signature_validity == timedelta(days=14)
    assert policy.signature_refresh == timedelta(days=7)
    assert policy.propagation_delay == timedelta(minutes=5)
    assert policy.safety_margin == timedelta(hours=1, minutes=30)
    assert config.zone("example.test") is zone  # lookup accepts the relative form
    assert config.zone("example.test.") is zone


def test_defaults_when_optional_sections_are_omitted(tmp_path: Path) -> None:
    text = FULL.split("[zones.parent]", maxsplit=1)[0]
    config = load_config(write(tmp_path, text))
    zone = config.zones[0]
    assert zone.parent.nameservers == []
    assert zone.policy.algorithm == "ECDSAP256SHA256"
    assert zone.policy.import_ksks is True
    assert zone.policy.safety_margin == timedelta(hours=1)
    assert zone.policy.propagation_delay == timedelta(minutes=5)


def test_lookup_of_unknown_provider_or_zone_raises_keyerror(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    with pytest.raises(KeyError):
        config.provider("nope")
    with pytest.raises(KeyError):
        config.zone("other.test")


def test_integer_duration_is_seconds(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL.replace('safety_margin = "1h30m"',
                                                      "safety_margin = 90")))
    assert config.zones[0].policy.safety_margin == timedelta(seconds=90)


def test_hostport_forms() -> None:
    assert hostport("127.0.0.1") == ("127.0.0.1", 53)
    assert hostport("127.0.0.1:5301") == ("127.0.0.1", 5301)
    assert hostport("[::1]:5301") == ("::1", 5301)
    assert hostport("[::1]") == ("::1", 53)
    assert hostport("::1") == ("::1", 53)


def test_find_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISIGNER_CONFIG", "/etc/ms/env.toml")
    assert find_config_path("/explicit.toml") == Path("/explicit.toml")
    assert find_config_path(None) == Path("/etc/ms/env.toml")
    monkeypatch.delenv("MULTISIGNER_CONFIG")
    assert find_config_path(None) == Path("multisigner.toml")


# --- ${VAR} -------------------------------------------------------------------------------


def test_var_substitution_inside_strings_and_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NS_HOST", "10.1.2.3")
    monkeypatch.setenv("PORT", "5353")
    text = FULL.replace('nameservers = ["127.0.0.1"]', 'nameservers = ["${NS_HOST}:${PORT}"]')
    config = load_config(write(tmp_path, text))
    assert config.provider("p2").nameservers == ["10.1.2.3:5353"]


def test_missing_variable_names_the_key_path_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("P0_API_KEY")
    path = write(tmp_path, FULL)
    err = load_error(path)
    assert str(err) == (
        f"{path}: providers[0].api_key: environment variable P0_API_KEY is not set"
    )


def test_every_missing_variable_is_reported_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("P0_API_KEY")
    monkeypatch.delenv("NO_SUCH_VAR_X", raising=False)
    text = FULL.replace('nameservers = ["127.0.0.1:5300"]', 'nameservers = ["${NO_SUCH_VAR_X}"]')
    message = str(load_error(write(tmp_path, text)))
    assert "providers[0].api_key: environment variable P0_API_KEY is not set" in message
    assert ("zones[0].parent.nameservers[0]: environment variable NO_SUCH_VAR_X is not set"
            in message)


# --- errors name the file and the key path --------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param('model = 2\n', 'model = 2\npolcy = "x"\n',
                     "zones[0].polcy: unknown key", id="unknown-key-zone"),
        pytest.param('import_ksks = false', 'import_ksk = false',
                     "zones[0].policy.import_ksk: unknown key", id="unknown-key-policy"),
        pytest.param('[state]\n', '[state]\nurll = "x"\n',
                     "state.urll: unknown key", id="unknown-key-state"),
        pytest.param('model = 2', 'model = "two"',
                     "zones[0].model: Input should be 1 or 2", id="wrong-type-model"),
        pytest.param('nameservers = ["127.0.0.1"]', 'nameservers = "127.0.0.1"',
                     "providers[2].nameservers: Input should be a valid list",
                     id="wrong-type-list"),
        pytest.param('import_ksks = false', 'import_ksks = "maybe"',
                     "zones[0].policy.import_ksks: Input should be a valid boolean",
                     id="wrong-type-bool"),
        pytest.param('signers = ["p0", "p1", "p2"]', 'signers = ["p0", "p9", "p2"]',
                     "zones[0].signers[1]: no provider named 'p9' (configured: p0, p1, p2)",
                     id="signer-not-a-provider"),
        pytest.param('signers = ["p0", "p1", "p2"]', 'signers = ["p0", "p1", "p0"]',
                     "zones[0].signers: signer listed twice: p0", id="signer-twice"),
        pytest.param('signers = ["p0", "p1", "p2"]', 'signers = []',
                     "zones[0].signers: List should have at least 1 item", id="no-signers"),
        pytest.param('name = "p1"', 'name = "p0"',
                     "providers: name 'p0' is used by more than one provider",
                     id="duplicate-provider"),
        pytest.param('safety_margin = "1h30m"', 'safety_margin = "5x"',
                     "zones[0].policy.safety_margin: cannot read '5x' as a duration",
                     id="bad-duration"),
        pytest.param('propagation_delay = "5m"', 'propagation_delay = "-1s"',
                     "zones[0].policy.propagation_delay: cannot read '-1s' as a duration",
                     id="negative-duration-string"),
        pytest.param('timeout = "30s"', 'timeout = ""',
                     "providers[0].timeout: empty duration", id="empty-duration"),
        pytest.param('algorithm = "ecdsap256sha256"', 'algorithm = "ECDSA-FOO"',
                     "zones[0].policy.algorithm: 'ECDSA-FOO' is not a DNSSEC signing "
                     "algorithm", id="bad-algorithm"),
        pytest.param('nameservers = ["127.0.0.1:5302"]', 'nameservers = ["127.0.0.1:70000"]',
                     "providers[1].nameservers[0]: port 70000 out of range in "
                     "'127.0.0.1:70000'", id="bad-port"),
        pytest.param('nameservers = ["127.0.0.1:5302"]', 'nameservers = ["127.0.0.1:dns"]',
                     "providers[1].nameservers[0]: '127.0.0.1:dns' is not 'host' or "
                     "'host:port'", id="bad-hostport"),
        pytest.param('nameservers = ["127.0.0.1:5302"]', 'nameservers = []',
                     "providers[1].nameservers: List should have at least 1 item",
                     id="no-nameservers"),
        pytest.param('api_url = "http://127.0.0.1:8083"', 'api_url = "127.0.0.1:8083"',
                     "providers[2].api_url: '127.0.0.1:8083' must start with http:// or "
                     "https://", id="bad-url"),
        pytest.param('type = "cds-scan"', 'type = "carrier-pigeon"',
                     "zones[0].parent.type: Input should be 'cds-scan'", id="bad-parent-type"),
        pytest.param('name = "p2"', 'name = "p 2"',
                     "providers[2].name: String should match pattern", id="bad-provider-name"),
        pytest.param('name = "example.test"', 'name = "a..b"',
                     "zones[0].name: 'a..b' is not a valid domain name", id="bad-zone-name"),
    ],
)
def test_error_names_file_key_path_and_problem(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in FULL
    path = write(tmp_path, FULL.replace(old, new, 1))
    message = str(load_error(path))
    assert message.startswith(f"{path}: invalid configuration:\n  ")
    assert any(problem.removeprefix("(top level): ").startswith(expected)
               for problem in problems(message)), message


def test_duplicate_zone_is_an_error(tmp_path: Path) -> None:
    zone = FULL[FULL.index("[[zones]]"):FULL.index("[zones.parent]")]
    message = str(load_error(write(tmp_path, FULL + "\n" + zone)))
    assert "zones: example.test. is configured more than once" in message


def test_all_field_errors_are_reported_together(tmp_path: Path) -> None:
    text = (FULL.replace("model = 2\n", 'model = 2\npolcy = "x"\n')
            .replace('safety_margin = "1h30m"', 'safety_margin = "5x"'))
    message = str(load_error(write(tmp_path, text)))
    lines = sorted(problems(message))
    assert len(lines) == 2
    assert lines[0].startswith("zones[0].polcy: unknown key")
    assert lines[1].startswith("zones[0].policy.safety_margin: cannot read '5x'")


def test_malformed_toml_names_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, FULL.replace("model = 2", "model = "))
    message = str(load_error(path))
    assert message.startswith(f"{path}: not valid TOML: ")
    line = FULL.splitlines().index("model = 2") + 1
    assert f"at line {line}," in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    message = str(load_error(path))
    assert message.startswith(f"{path}: no such config file")
    assert "--config" in message and "MULTISIGNER_CONFIG" in message


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    # A directory where the file should be: OSError other than FileNotFoundError.
    path = tmp_path / "dir.toml"
    path.mkdir()
    assert "cannot read" in str(load_error(path))


def test_config_error_exit_code_is_2() -> None:
    assert ConfigError.exit_code == 2
    assert issubclass(ConfigError, MultisignerError)
    assert ConfigError("x").exit_code == 2


# --- secrets never leak ----------------------------------------------------------------------


def test_api_key_not_in_repr_or_str_of_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    for text in (repr(config), str(config), repr(config.provider("p0")),
                 config.model_dump_json()):
        assert SECRET not in text
        assert "literal-key-1" not in text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('model = 2', 'model = "two"'),  # an error elsewhere in the file
        ('server_id = "localhost"', 'server_id = 5'),  # an error in the same provider
        ('api_key = "${P0_API_KEY}"', 'api_key = "${P0_API_KEY}"\napi_kye = "${P0_API_KEY}"'),
        ('name = "p1"', 'name = "p0"'),  # model-level error
    ],
)
def test_api_key_not_in_error_messages(tmp_path: Path, old: str, new: str) -> None:
    err = load_error(write(tmp_path, FULL.replace(old, new, 1)))
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert "literal-key-1" not in str(err)


# --- bugs -----------------------------------------------------------------------------------


def test_huge_duration_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, FULL.replace('safety_margin = "1h30m"',
                                        'safety_margin = "99999999999d"'))
    assert "zones[0].policy.safety_margin" in str(load_error(path))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("-5"),
        pytest.param("true"),
        pytest.param('"-5s"'),
    ],
)
def test_negative_or_boolean_duration_is_rejected(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, FULL.replace('safety_margin = "1h30m"', f"safety_margin = {value}"))
    assert "zones[0].policy.safety_margin" in str(load_error(path))


# --- combinations and values that load but cannot work ------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param('signature_refresh = "7d"', 'signature_refresh = "14d"',
                     "zones[0].policy: signature_refresh: 14d is not shorter than "
                     "signature_validity 14d", id="refresh-equals-validity"),
        pytest.param('signature_refresh = "7d"', 'signature_refresh = "20d"',
                     "zones[0].policy: signature_refresh: 20d is not shorter than "
                     "signature_validity 14d", id="refresh-beyond-validity"),
        pytest.param('zsk_lifetime = "90d"', 'zsk_lifetime = "0s"',
                     "zones[0].policy.zsk_lifetime: must be longer than 0s", id="zsk-lifetime-0"),
        pytest.param('ksk_lifetime = "365d"', "ksk_lifetime = 0",
                     "zones[0].policy.ksk_lifetime: must be longer than 0s", id="ksk-lifetime-0"),
        pytest.param('signature_validity = "14d"', 'signature_validity = "0s"',
                     "zones[0].policy.signature_validity: must be longer than 0s",
                     id="validity-0"),
        pytest.param('safety_margin = "1h30m"', 'safety_margin = "1h30m"\n'
                     'propagation_timeout = "0s"',
                     "zones[0].policy.propagation_timeout: must be longer than 0s",
                     id="propagation-timeout-0"),
        pytest.param('safety_margin = "1h30m"', 'safety_margin = "1h30m"\nparent_timeout = 0',
                     "zones[0].policy.parent_timeout: must be longer than 0s",
                     id="parent-timeout-0"),
        pytest.param('api_key = "literal-key-1"', 'api_key = ""',
                     "providers[1].api_key: empty", id="empty-api-key"),
        pytest.param('api_key = "literal-key-1"', 'api_key = "   "',
                     "providers[1].api_key: empty", id="blank-api-key"),
        pytest.param('name = "example.test"', 'name = "."',
                     "zones[0].name: the root zone '.' cannot be managed", id="root-zone"),
        pytest.param('api_url = "https://pdns.p1.example:8443"',
                     'api_url = "http://pdns.p1.example:8081"',
                     "providers[1]: api_url: http://pdns.p1.example:8081 sends the API key "
                     "unencrypted to pdns.p1.example", id="plain-http-remote"),
        pytest.param('api_url = "https://pdns.p1.example:8443"',
                     'api_url = "http://192.0.2.7:8081"',
                     "providers[1]: api_url: http://192.0.2.7:8081 sends the API key "
                     "unencrypted", id="plain-http-remote-address"),
        pytest.param('api_url = "https://pdns.p1.example:8443"',
                     'api_url = "https://pdns.p1.example:99999"',
                     "providers[1].api_url: 'https://pdns.p1.example:99999' is not a valid URL",
                     id="api-url-bad-port"),
        pytest.param('server_id = "srv1"', 'server_id = "srv1"\nca_file = "/nonexistent/ca.pem"',
                     "providers[1].ca_file: /nonexistent/ca.pem: no such file", id="no-ca-file"),
        pytest.param('url = "sqlite:///multisigner.db"',
                     'url = "postgresql+psycopg://ms:hunter2@db.example:notaport/ms"',
                     "state.url: 'postgresql+psycopg://ms:***@db.example:notaport/ms': the "
                     "port is not a number", id="state-url-bad-port"),
        pytest.param('url = "sqlite:///multisigner.db"',
                     'url = "postgresql+psycopg://ms:hunter2@db.example:70000/ms"',
                     "state.url: 'postgresql+psycopg://ms:***@db.example:70000/ms': port 70000 "
                     "is out of range", id="state-url-port-range"),
        pytest.param('url = "sqlite:///multisigner.db"', 'url = "ms:hunter2 at db.example"',
                     "state.url: is not a valid URL", id="state-url-garbage"),
        pytest.param('url = "sqlite:///multisigner.db"',
                     'url = "postgresql+psycopg://ms:hun@ter2@db.example/ms"',
                     "state.url: 'postgresql+psycopg://ms:***@db.example/ms': an '@' in the "
                     "user name or password must be written %40", id="state-url-raw-at"),
    ],
)
def test_unusable_values_are_refused_at_load(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in FULL
    path = write(tmp_path, FULL.replace(old, new, 1))
    message = str(load_error(path))
    assert any(problem.startswith(expected) for problem in problems(message)), message
    for secret in ("hunter2", "ter2", "literal-key-1"):
        assert secret not in message


@pytest.mark.parametrize("url", ["http://localhost:8081", "http://127.0.0.2:8081",
                                 "http://[::1]:8081"])
def test_plain_http_to_loopback_is_allowed(tmp_path: Path, url: str) -> None:
    config = load_config(write(tmp_path, FULL.replace("http://127.0.0.1:8083", url)))
    assert config.provider("p2").api_url == url


def test_plain_http_to_a_remote_host_when_allowed(tmp_path: Path) -> None:
    text = FULL.replace('api_url = "https://pdns.p1.example:8443"',
                        'api_url = "http://pdns.p1.example:8081"\nallow_plain_http = true')
    assert load_config(write(tmp_path, text)).provider("p1").api_url \
        == "http://pdns.p1.example:8081"


def test_tls_and_proxy_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    text = FULL.replace('server_id = "srv1"',
                        f'server_id = "srv1"\nca_file = "{ca}"\nproxy_from_env = true')
    config = load_config(write(tmp_path, text))
    p1, p2 = config.provider("p1"), config.provider("p2")
    assert isinstance(p1, ProviderConfig) and isinstance(p2, ProviderConfig)
    assert (p1.ca_file, p1.proxy_from_env) == (ca, True)
    assert (p2.ca_file, p2.proxy_from_env, p2.allow_plain_http) == (None, False, False)


def test_state_url_password_is_not_in_the_config_repr(tmp_path: Path) -> None:
    text = FULL.replace('url = "sqlite:///multisigner.db"',
                        'url = "postgresql+psycopg://ms:hunter2@db.example:5432/ms"')
    config = load_config(write(tmp_path, text))
    assert config.state.url.endswith("@db.example:5432/ms")
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.state)


def test_cli_exits_2_naming_the_key_and_hiding_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import main

    text = FULL.replace('url = "sqlite:///multisigner.db"',
                        'url = "postgresql+psycopg://ms:hunter2@db.example:port/ms"')
    path = write(tmp_path, text)
    assert main(["--config", str(path), "status", "example.test"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: invalid configuration" in err and "state.url:" in err, err
    assert "hunter2" not in err and "Traceback" not in err
