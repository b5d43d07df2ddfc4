"""Provider presets (mailer.presets): complete, valid account settings with sane quotas."""

from __future__ import annotations

import pytest

from mailer import presets
from mailer.models import SmtpAccount


def test_it_covers_the_common_providers():
    assert set(presets.PRESETS) == {"gmail", "microsoft365", "fastmail", "icloud", "yahoo", "local"}
    assert presets.choices()[0] == ("gmail", "Gmail")


@pytest.mark.parametrize("key", list(presets.PRESETS))
def test_each_preset_is_a_valid_account(key, django_user_model, db):
    preset = presets.get(key)
    owner = django_user_model.objects.create_user("ann")
    account = SmtpAccount(
        owner=owner, label=preset.name, from_address="ann@example.com", **preset.account_fields()
    )
    account.full_clean()  # host, port, security and auth mechanism are valid choices
    account.save()
    assert preset.help.endswith(".") and len(preset.help) < 300
    if key == "local":
        assert account.host == "127.0.0.1" and account.security == "none"
        assert account.quota_per_minute is None
    else:
        # a real provider: encrypted, verified, with every quota set and consistent
        assert account.security in ("starttls", "tls") and account.verify_tls
        assert not account.allow_plaintext_auth
        assert 0 < account.quota_per_minute <= account.quota_per_hour <= account.quota_per_day
        assert account.quota_per_minute * 60 >= account.quota_per_hour


def test_the_help_says_how_to_log_in():
    assert "app password" in presets.get("gmail").help
    assert "XOAUTH2" in presets.get("gmail").help
    m365 = presets.get("microsoft365")
    assert m365.auth_mechanism == "XOAUTH2" and "basic-auth" in m365.help


def test_quotas_stay_below_published_caps():
    # Exchange Online: 30 messages a minute; Gmail: 500 recipients a day.
    assert presets.get("microsoft365").quota_per_minute < 30
    assert presets.get("gmail").quota_per_day < 500


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(KeyError, match="known presets: gmail, microsoft365"):
        presets.get("aol")


def test_each_real_provider_has_its_imap_side():
    assert presets.imap_for("smtp.gmail.com") == presets.ImapPreset(
        "imap.gmail.com", 993, "tls", save_to_sent=False)  # Gmail files sent mail itself
    assert presets.imap_for("SMTP.Office365.com.").host == "outlook.office365.com"
    assert presets.imap_for("smtp.fastmail.com").host == "imap.fastmail.com"
    assert presets.imap_for("mail.example.net") is None
    for preset in presets.PRESETS.values():
        if preset.key != "local":
            assert preset.imap and preset.imap.port == 993 and preset.imap.security == "tls"
        assert "imap" not in preset.account_fields()
