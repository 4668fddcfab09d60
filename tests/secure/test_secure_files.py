"""What the secure stack leaves on disk: private files, no secret in a log."""

from __future__ import annotations

import stat

import pytest

from clickstream.settings import Settings
from commands.stack.secure import SecureFiles, principals

pytestmark = pytest.mark.secure


def test_passwords_and_keys_are_private(secure_settings: Settings, files: SecureFiles) -> None:
    private = [files.ca_key, files.kafka_keystore, files.es_key]
    private += [files.password(p.name) for p in principals(secure_settings)]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(files.root.stat().st_mode) == 0o700


def test_no_password_in_any_log(secure_settings: Settings, files: SecureFiles) -> None:
    secrets = [files.password(p.name).read_text().strip() for p in principals(secure_settings)]
    secrets.append(files.password("broker").read_text().strip())
    logs = list((files.home / "logs").glob("*.log"))
    logs += list((files.home / "data" / "elasticsearch" / "logs").glob("*"))
    assert logs
    for log in logs:
        if log.is_file():
            text = log.read_text(errors="replace")
            assert not any(secret in text for secret in secrets), log
            assert "SCRAM-SHA-512=[" not in text, log


def test_every_client_settings_file_exists(secure_settings: Settings, files: SecureFiles) -> None:
    for principal in principals(secure_settings):
        text = files.client_config(principal.name).read_text()
        assert f'"{files.password(principal.name)}"' in text
