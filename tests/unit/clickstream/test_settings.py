"""Settings: defaults, precedence (env > TOML > defaults), validation messages, secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from clickstream import security
from clickstream.errors import ConfigError
from clickstream.settings import (
    ElasticsearchSettings,
    KafkaSettings,
    load_settings,
    redacted,
    settings_reference,
)
from tests.paths import ROOT

README = ROOT / "README.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLICKSTREAM_"):
            monkeypatch.delenv(name)


class TestLoadSettings:
    def test_defaults_point_at_the_local_stack(self) -> None:
        """With no file and no environment, every client points at 127.0.0.1."""
        settings = load_settings()
        assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
        assert (settings.hbase.host, settings.hbase.port) == ("127.0.0.1", 9090)
        assert settings.elasticsearch.url == "http://127.0.0.1:9200"
        assert settings.hbase.salt_buckets == 16

    def test_environment_overrides_toml(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CLICKSTREAM_<SECTION>__<KEY> beats the file, which beats the default."""
        config = tmp_path / "c.toml"
        config.write_text('[hbase]\ntable = "from_file"\nsalt_buckets = 8\n')
        monkeypatch.setenv("CLICKSTREAM_HBASE__TABLE", "from_env")
        settings = load_settings(config)
        assert settings.hbase.table == "from_env"
        assert settings.hbase.salt_buckets == 8

    def test_config_file_from_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CLICKSTREAM_CONFIG names the file when --config is not given."""
        config = tmp_path / "c.toml"
        config.write_text('[elasticsearch]\nindex_prefix = "acme"\n')
        monkeypatch.setenv("CLICKSTREAM_CONFIG", str(config))
        assert load_settings().elasticsearch.index_prefix == "acme"

    def test_missing_file_is_an_error(self, tmp_path: Path) -> None:
        """A config path that does not exist is named in the error."""
        with pytest.raises(ConfigError, match="does not exist"):
            load_settings(tmp_path / "nope.toml")

    def test_bad_value_names_setting_and_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A malformed value's error names the dotted setting and its environment variable."""
        monkeypatch.setenv("CLICKSTREAM_KAFKA__BOOTSTRAP_SERVERS", "no-port-here")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert "kafka.bootstrap_servers" in str(caught.value)
        assert "CLICKSTREAM_KAFKA__BOOTSTRAP_SERVERS" in str(caught.value)

    def test_misspelt_key_is_an_error(self, tmp_path: Path) -> None:
        """An unknown key in the file is rejected, not silently ignored."""
        config = tmp_path / "c.toml"
        config.write_text("[hbase]\ntabel = 'x'\n")
        with pytest.raises(ConfigError, match=r"hbase\.tabel"):
            load_settings(config)

    def test_malformed_toml_is_an_error(self, tmp_path: Path) -> None:
        """A TOML syntax error is reported with the file name."""
        config = tmp_path / "c.toml"
        config.write_text("[hbase\n")
        with pytest.raises(ConfigError, match=r"c\.toml"):
            load_settings(config)

    def test_salt_buckets_bounded_by_one_key_byte(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """More than 256 buckets cannot fit the row key's first byte."""
        monkeypatch.setenv("CLICKSTREAM_HBASE__SALT_BUCKETS", "300")
        with pytest.raises(ConfigError, match="salt_buckets"):
            load_settings()


MASK = "*" * 10  # how `config show` prints a secret
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def _pem(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(PEM)
    return path


def _secret_file(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


@pytest.fixture
def warnings_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the warnings this process has logged, so that a test sees its own."""
    monkeypatch.setattr(security, "_warned", set())


class TestSecrets:
    def test_secrets_are_masked_in_redacted_output(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Passwords never appear in what `config show` prints."""
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__USERNAME", "clickstream")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__PASSWORD", "hunter2")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_USERNAME", "ingest")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_PASSWORD", "s3cret")
        settings = load_settings()
        shown = json.dumps(redacted(settings))
        assert "hunter2" not in shown
        assert "s3cret" not in shown
        assert "hunter2" not in repr(settings)
        assert settings.kafka.client_config()["sasl.password"] == "s3cret"

    def test_every_secret_is_masked_whether_inline_or_from_a_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`config show`, repr and str show none of the four secrets, however they were given;
        the files' paths are shown."""
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_USERNAME", "ingest")
        password_file = _secret_file(tmp_path, "kafka-password", "kafka-pw-1\n")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_PASSWORD_FILE", str(password_file))
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SSL_CERTIFICATE_FILE", str(_pem(tmp_path, "c.pem")))
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SSL_KEY_FILE", str(_pem(tmp_path, "k.pem")))
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SSL_KEY_PASSWORD", "key-pw-2")
        api_key_file = _secret_file(tmp_path, "es-api-key", "es-key-3\n")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__URL", "https://es.example:9200")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__API_KEY_FILE", str(api_key_file))
        settings = load_settings()
        shown = json.dumps(redacted(settings))
        for secret in ("kafka-pw-1", "key-pw-2", "es-key-3"):
            assert secret not in shown
            assert secret not in repr(settings)
            assert secret not in str(settings)
        data = redacted(settings)
        assert data["kafka"]["sasl_password"] == MASK
        assert data["kafka"]["ssl_key_password"] == MASK
        assert data["elasticsearch"]["api_key"] == MASK
        assert data["elasticsearch"]["password"] is None
        assert data["kafka"]["sasl_password_file"] == str(password_file)
        assert data["elasticsearch"]["api_key_file"] == str(api_key_file)

    def test_password_in_the_url_moves_to_username_and_password(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A user:password@ in elasticsearch.url becomes the (masked) credentials: the URL that
        messages and `config show` print carries none."""
        monkeypatch.setenv(
            "CLICKSTREAM_ELASTICSEARCH__URL", "https://elastic:p%40ss:w0rd@es.example:9200/"
        )
        es = load_settings().elasticsearch
        assert es.url == "https://es.example:9200"
        assert es.username == "elastic"
        assert es.password is not None
        assert es.password.get_secret_value() == "p@ss:w0rd"
        assert "w0rd" not in json.dumps(redacted(load_settings()))

    def test_password_in_the_url_and_a_username_is_an_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Credentials given twice are refused, and the error quotes the URL redacted."""
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__URL", "https://elastic:w0rd@es.example:9200")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__USERNAME", "other")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        message = str(caught.value)
        assert "https://***@es.example:9200" in message
        assert "w0rd" not in message

    def test_bad_url_error_does_not_quote_its_password(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A malformed URL is quoted without its userinfo."""
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__URL", "ftp://elastic:w0rd@es.example:9200")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert "elasticsearch.url" in str(caught.value)
        assert "w0rd" not in str(caught.value)


class TestSecretFiles:
    @pytest.mark.parametrize(
        ("section", "key", "extra"),
        [
            (
                "kafka",
                "sasl_password",
                {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "ingest"},
            ),
            ("elasticsearch", "password", {"USERNAME": "clickstream"}),
            ("elasticsearch", "api_key", {}),
        ],
    )
    def test_secret_read_from_its_file(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        section: str,
        key: str,
        extra: dict[str, str],
    ) -> None:
        """<name>_FILE names a file (a systemd credential) whose content, trailing newline
        stripped, is the secret."""
        for name, value in extra.items():
            monkeypatch.setenv(f"CLICKSTREAM_{section.upper()}__{name}", value)
        path = _secret_file(tmp_path, "credential", "  from file\n")
        monkeypatch.setenv(f"CLICKSTREAM_{section.upper()}__{key.upper()}_FILE", str(path))
        secret = getattr(getattr(load_settings(), section), key)
        assert secret.get_secret_value() == "  from file"

    def test_key_password_read_from_its_file(self, tmp_path: Path) -> None:
        """kafka.ssl_key_password_file, given in the TOML file, is read the same way (CRLF too)."""
        path = _secret_file(tmp_path, "key-password", "pass phrase\r\n")
        config = tmp_path / "c.toml"
        config.write_text(
            "[kafka]\n"
            'security_protocol = "SSL"\n'
            f'ssl_certificate_file = "{_pem(tmp_path, "c.pem")}"\n'
            f'ssl_key_file = "{_pem(tmp_path, "k.pem")}"\n'
            f'ssl_key_password_file = "{path}"\n'
        )
        kafka = load_settings(config).kafka
        assert kafka.ssl_key_password is not None
        assert kafka.ssl_key_password.get_secret_value() == "pass phrase"
        assert kafka.security_config()["ssl.key.password"] == "pass phrase"

    def test_secret_and_its_file_both_given_is_an_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Giving the secret and its file names both, and quotes neither secret."""
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__USERNAME", "clickstream")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__PASSWORD", "inline-secret")
        path = _secret_file(tmp_path, "pw", "file-secret\n")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__PASSWORD_FILE", str(path))
        with pytest.raises(ConfigError) as caught:
            load_settings()
        message = str(caught.value)
        assert "CLICKSTREAM_ELASTICSEARCH__PASSWORD," in message
        assert "CLICKSTREAM_ELASTICSEARCH__PASSWORD_FILE" in message
        assert "elasticsearch.password and elasticsearch.password_file" in message
        assert "inline-secret" not in message
        assert "file-secret" not in message

    def test_section_errors_never_quote_the_input(self) -> None:
        """A section built directly (tests, tools) raises errors without the input values."""
        with pytest.raises(ValidationError) as caught:
            ElasticsearchSettings(
                username="clickstream",
                password=SecretStr("inline-secret"),
                password_file=Path("/x"),
            )
        assert "inline-secret" not in str(caught.value)
        with pytest.raises(ValidationError) as caught:
            KafkaSettings(security_protocol="SASL_SSL", sasl_username=["inline-secret"])
        assert "inline-secret" not in str(caught.value)

    def test_missing_file_names_setting_and_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A secret file that is not there: the error names the setting and the path."""
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_USERNAME", "ingest")
        missing = tmp_path / "credentials" / "kafka-password"
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_PASSWORD_FILE", str(missing))
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert f"cannot read kafka.sasl_password_file {missing}: No such file or directory" in (
            str(caught.value)
        )

    def test_unreadable_file_names_the_path_not_the_content(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A path that cannot be read as a secret (a directory; bytes that are not UTF-8) is an
        error naming it, and no byte of the content is quoted."""
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__API_KEY_FILE", str(tmp_path))
        with pytest.raises(ConfigError, match=f"cannot read elasticsearch.api_key_file {tmp_path}"):
            load_settings()
        binary = tmp_path / "key.bin"
        binary.write_bytes(b"\xffk3y-c0ntent\xfe")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__API_KEY_FILE", str(binary))
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert f"elasticsearch.api_key_file {binary} is not UTF-8 text" in str(caught.value)
        assert "k3y-c0ntent" not in str(caught.value)
        assert "xff" not in str(caught.value)

    def test_empty_file_is_an_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A file holding only a newline is a mistake, not an empty password."""
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__USERNAME", "clickstream")
        path = _secret_file(tmp_path, "pw", "\n")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__PASSWORD_FILE", str(path))
        with pytest.raises(ConfigError, match=f"elasticsearch.password_file {path} is empty"):
            load_settings()


class TestKafkaSecurity:
    def test_sasl_mechanism_defaults_to_scram_sha_512(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Unset or empty (as older configurations had it): SCRAM-SHA-512; case is ignored."""
        assert load_settings().kafka.sasl_mechanism == "SCRAM-SHA-512"
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_MECHANISM", "")
        assert load_settings().kafka.sasl_mechanism == "SCRAM-SHA-512"
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_MECHANISM", "scram-sha-256")
        assert load_settings().kafka.sasl_mechanism == "SCRAM-SHA-256"
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_MECHANISM", "GSSAPI")
        with pytest.raises(ConfigError, match=r"kafka\.sasl_mechanism"):
            load_settings()

    def test_username_without_password_is_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The error names the variables that fix it."""
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_USERNAME", "ingest")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert "kafka.sasl_username is set but not its password" in str(caught.value)
        assert "CLICKSTREAM_KAFKA__SASL_PASSWORD_FILE" in str(caught.value)

    def test_sasl_protocol_without_user_is_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        with pytest.raises(ConfigError, match="SASL_SSL needs a user: set CLICKSTREAM_KAFKA__SASL"):
            load_settings()

    def test_credentials_without_sasl_protocol_are_an_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A user and password that PLAINTEXT would never send are a mistake, said so."""
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_USERNAME", "ingest")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_PASSWORD", "s3cret")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert "kafka.security_protocol is PLAINTEXT" in str(caught.value)
        assert "set kafka.security_protocol to SASL_SSL" in str(caught.value)
        assert "s3cret" not in str(caught.value)

    def test_tls_files_without_tls_protocol_are_an_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SSL_CA_FILE", str(_pem(tmp_path, "ca.pem")))
        with pytest.raises(ConfigError, match=r"kafka\.ssl_ca_file set but .* PLAINTEXT"):
            load_settings()

    @pytest.mark.parametrize(
        ("key", "kind"),
        [
            ("ssl_ca_file", "a PEM CA bundle"),
            ("ssl_certificate_file", "a PEM certificate"),
            ("ssl_key_file", "a PEM private key"),
        ],
    )
    def test_missing_pem_file_names_setting_and_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, kind: str
    ) -> None:
        """The error names the setting, its variable, the path and what the file should be."""
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SSL")
        missing = tmp_path / "nope.pem"
        monkeypatch.setenv(f"CLICKSTREAM_KAFKA__{key.upper()}", str(missing))
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert f"kafka.{key} {missing} does not exist or is not a file (give {kind})" in str(
            caught.value
        )
        assert f"CLICKSTREAM_KAFKA__{key.upper()}" in str(caught.value)

    def test_file_that_is_not_pem_is_an_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A DER or PKCS#12 file given for a PEM one is caught at load, its content not quoted."""
        der = tmp_path / "ca.der"
        der.write_bytes(b"0\x82\x01\nsecretish")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SSL")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SSL_CA_FILE", str(der))
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert f"kafka.ssl_ca_file {der} is not PEM" in str(caught.value)
        assert "secretish" not in str(caught.value)

    def test_certificate_without_key_is_an_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SSL")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SSL_CERTIFICATE_FILE", str(_pem(tmp_path, "c.pem")))
        with pytest.raises(ConfigError, match=r"mTLS needs both kafka\.ssl_certificate_file and"):
            load_settings()

    def test_hostname_check_off_is_allowed_and_warned_once(
        self, monkeypatch: pytest.MonkeyPatch, warnings_reset: None
    ) -> None:
        """ssl_endpoint_identification=none works, with one warning however often it loads."""
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SECURITY_PROTOCOL", "SSL")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SSL_ENDPOINT_IDENTIFICATION", "none")
        with capture_logs() as logs:
            kafka = load_settings().kafka
            load_settings()
        assert kafka.security_config()["ssl.endpoint.identification.algorithm"] == "none"
        assert [entry["event"] for entry in logs] == ["kafka.tls_hostname_unchecked"]
        assert logs[0]["log_level"] == "warning"
        assert logs[0]["setting"] == "kafka.ssl_endpoint_identification=none"

    def test_sasl_without_tls_is_warned(self, warnings_reset: None) -> None:
        """SASL_PLAINTEXT works but is said to be unencrypted (PLAIN: the password too)."""
        with capture_logs() as logs:
            KafkaSettings(
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN",
                sasl_username="u",
                sasl_password=SecretStr("p"),
            )
        assert [entry["event"] for entry in logs] == ["kafka.sasl_unencrypted"]
        assert logs[0]["risk"] == "clicks travel unencrypted and PLAIN sends the password in clear"

    def test_hostname_check_is_on_by_default(self, warnings_reset: None) -> None:
        with capture_logs() as logs:
            kafka = KafkaSettings(security_protocol="SSL")
        assert kafka.ssl_endpoint_identification == "https"
        assert logs == []


class TestElasticsearchSecurity:
    def test_tls_settings_need_https(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__CA_FILE", str(_pem(tmp_path, "ca.pem")))
        with pytest.raises(ConfigError, match=r"elasticsearch\.ca_file set but .* is not https"):
            load_settings()

    def test_missing_ca_file_names_setting_and_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__URL", "https://es.example:9200")
        missing = tmp_path / "http_ca.crt"
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__CA_FILE", str(missing))
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert f"elasticsearch.ca_file {missing} does not exist or is not a file" in str(
            caught.value
        )

    def test_fingerprint_is_normalised(self) -> None:
        """The openssl form (upper case, colons) becomes lower-case hex."""
        colons = ":".join(["AB"] * 32)
        es = ElasticsearchSettings(url="https://es:9200", ssl_assert_fingerprint=colons)
        assert es.ssl_assert_fingerprint == "ab" * 32

    def test_fingerprint_of_another_hash_is_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__URL", "https://es:9200")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__SSL_ASSERT_FINGERPRINT", "ab" * 20)
        with pytest.raises(ConfigError, match="must be a SHA-256 fingerprint: 64 hex digits"):
            load_settings()

    def test_fingerprint_with_a_client_certificate_is_an_error(self, tmp_path: Path) -> None:
        """The client would drop the certificate when pinning: refused, naming the fix."""
        with pytest.raises(ValueError, match=r"give elasticsearch\.ca_file instead"):
            ElasticsearchSettings(
                url="https://es:9200",
                ssl_assert_fingerprint="ab" * 32,
                client_certificate_file=_pem(tmp_path, "c.pem"),
                client_key_file=_pem(tmp_path, "k.pem"),
            )

    def test_fingerprint_with_a_ca_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"fingerprint and elasticsearch\.ca_file are both"):
            ElasticsearchSettings(
                url="https://es:9200",
                ssl_assert_fingerprint="ab" * 32,
                ca_file=_pem(tmp_path, "ca.pem"),
            )

    def test_verification_off_with_a_ca_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="verify_certs is false, which ignores elasticsea"):
            ElasticsearchSettings(
                url="https://es:9200", verify_certs=False, ca_file=_pem(tmp_path, "ca.pem")
            )

    def test_verification_off_is_warned_once(
        self, monkeypatch: pytest.MonkeyPatch, warnings_reset: None
    ) -> None:
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__URL", "https://es:9200")
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__VERIFY_CERTS", "false")
        with capture_logs() as logs:
            assert load_settings().elasticsearch.verify_certs is False
            load_settings()
        assert [entry["event"] for entry in logs] == ["elasticsearch.tls_unverified"]
        assert logs[0]["log_level"] == "warning"

    def test_credentials_over_plain_http_are_warned(self, warnings_reset: None) -> None:
        """Over http:// to another host the password travels in clear: a warning (not on the
        loopback of the local stack)."""
        with capture_logs() as logs:
            ElasticsearchSettings(url="http://127.0.0.1:9200", api_key="k")
            ElasticsearchSettings(url="http://es.example:9200", api_key="k")
        assert [entry["event"] for entry in logs] == ["elasticsearch.credentials_unencrypted"]
        assert logs[0]["setting"] == "elasticsearch.url=http://es.example:9200"

    def test_username_without_password_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="username is set but not its password"):
            ElasticsearchSettings(username="clickstream")

    def test_api_key_and_username_is_an_error(self) -> None:
        with pytest.raises(ValueError, match=r"api_key and elasticsearch\.username are both set"):
            ElasticsearchSettings(username="clickstream", password=SecretStr("pw"), api_key="k")


class TestReference:
    def test_readme_lists_every_setting(self) -> None:
        """The README's configuration table is the generated one (`make readme` regenerates it)."""
        assert settings_reference() in README.read_text()

    def test_reference_names_env_vars(self) -> None:
        """Each row carries its environment variable."""
        assert "`CLICKSTREAM_HBASE__TABLE`" in settings_reference()
