"""Settings: defaults, precedence (env > TOML > defaults), validation messages, secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clickstream.errors import ConfigError
from clickstream.settings import load_settings, redacted, settings_reference
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


class TestSecrets:
    def test_secrets_are_masked_in_redacted_output(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Passwords never appear in what `config show` prints."""
        monkeypatch.setenv("CLICKSTREAM_ELASTICSEARCH__PASSWORD", "hunter2")
        monkeypatch.setenv("CLICKSTREAM_KAFKA__SASL_PASSWORD", "s3cret")
        settings = load_settings()
        shown = json.dumps(redacted(settings))
        assert "hunter2" not in shown
        assert "s3cret" not in shown
        assert "hunter2" not in repr(settings)
        assert settings.kafka.client_config()["sasl.password"] == "s3cret"


class TestReference:
    def test_readme_lists_every_setting(self) -> None:
        """The README's configuration table is the generated one (`make readme` regenerates it)."""
        assert settings_reference() in README.read_text()

    def test_reference_names_env_vars(self) -> None:
        """Each row carries its environment variable."""
        assert "`CLICKSTREAM_HBASE__TABLE`" in settings_reference()
