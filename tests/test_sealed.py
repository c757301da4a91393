"""Secrets at rest: signing keys and notification secrets are stored encrypted (Fernet) with
keys that rotate, and a rotated notification secret still signs (a second `v1=`) for a grace
period, so that retries in flight verify."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.fernet import Fernet

from callrail_sync.sealed import Sealer
from callrail_sync.signatures import verify
from callrail_sync.stores import on_database
from callrail_sync.stores.notifications import CONFIGS
from callrail_sync.stores.receivers import COLLECTION as RECEIVERS
from callrail_sync.stores.receivers import Registration

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_secrets_are_stored_sealed_and_read_in_the_clear(stores, owner):
    sealed = on_database(stores.db, sealer=Sealer(NEW))
    config, _ = sealed.notifications.configure(owner, "https://example.com/h", ["sync.failed"])
    secret = config.secret.get_secret_value()
    assert secret.startswith("whsec_")
    raw = stores.db[CONFIGS].find_one({"_id": owner})
    assert raw["secret"].startswith("fernet:") and secret not in str(raw)
    registration = Registration(
        callrail_account_id="ACC" + "1" * 32,
        company_id="COM" + "1" * 32,
        integration_id="1",
        signing_key="0123456789abcdef0123456789abcdef",
    )
    sealed.receivers.register(owner, registration)
    doc = stores.db[RECEIVERS].find_one({"_id": registration.company_id})
    assert doc["signing_key"].startswith("fernet:") and registration.signing_key not in str(doc)
    assert sealed.receivers.get(registration.company_id).signing_key == registration.signing_key
    # Without the key, a sealed secret is not read as if it were the secret.
    with pytest.raises(RuntimeError, match="SECRETS_KEYS"):
        on_database(stores.db).notifications.config(owner)


def test_the_sealing_key_rotates_and_plain_values_from_before_are_read(stores, owner):
    before = on_database(stores.db, sealer=Sealer(OLD))
    before.notifications.configure(owner, "https://example.com/h", ["sync.failed"])
    secret = before.notifications.config(owner).secret.get_secret_value()
    rotated = on_database(stores.db, sealer=Sealer(f"{NEW},{OLD}"))  # the new key first
    assert rotated.notifications.config(owner).secret.get_secret_value() == secret
    with pytest.raises(RuntimeError, match="does not hold"):
        on_database(stores.db, sealer=Sealer(NEW)).notifications.config(owner)
    # Values written before encryption was turned on are read as they are.
    stores.db[CONFIGS].update_one({"_id": owner}, {"$set": {"secret": "whsec_plain"}})
    assert rotated.notifications.config(owner).secret.get_secret_value() == "whsec_plain"
    resealed = Sealer(f"{NEW},{OLD}").reseal(Sealer(OLD).seal("x"))  # then OLD can go
    assert Sealer(NEW).open(resealed) == "x"


def test_after_a_rotation_both_secrets_sign_for_the_grace_period(stores, owner):
    from callrail_sync.signatures import sign
    from callrail_sync.stores.database import utcnow

    store = on_database(stores.db, sealer=Sealer(NEW)).notifications
    first, _ = store.configure(owner, "https://example.com/h", ["sync.failed"])
    config = store.rotate(owner, grace_seconds=3600)
    old, new = first.secret.get_secret_value(), config.secret.get_secret_value()
    assert old != new and config.previous_secret.get_secret_value() == old
    now = utcnow()
    assert config.signing_secrets(now) == [new, old]
    assert config.signing_secrets(now + dt.timedelta(hours=2)) == [new]
    header = sign(new, b"{}", also=[old])
    assert header.count("v1=") == 2 and verify(new, header, b"{}") and verify(old, header, b"{}")


def test_without_secrets_keys_only_development_starts_and_it_warns_once(caplog):
    from callrail_sync.config import Settings
    from callrail_sync.sealed import NO_KEYS, SecretsKeysMissing, sealer_for

    with pytest.raises(SecretsKeysMissing) as refused:
        sealer_for(Settings(secrets_keys=""))
    assert str(refused.value) == NO_KEYS and "\n" not in NO_KEYS
    with caplog.at_level("WARNING", logger="callrail_sync.sealed"):
        plain = [sealer_for(Settings(secrets_keys="", development=True)) for _ in range(3)]
    assert not any(s.sealing for s in plain)
    warned = [r for r in caplog.records if "plain text" in r.getMessage()]
    assert len(warned) <= 1  # once a process (an earlier test may have had it already)
    assert sealer_for(Settings(secrets_keys=NEW)).seal("x").startswith("fernet:")


def test_a_cli_verb_without_secrets_keys_refuses_in_one_line(settings):
    from callrail_sync.cli.main import main
    from callrail_sync.cli.ops import Context

    bare = settings.model_copy(update={"secrets_keys": ""})
    with pytest.raises(SystemExit) as refused:
        main(["jobs"], Context(bare))
    assert str(refused.value).startswith("callrail-sync: SECRETS_KEYS is not set")


def test_reseal_writes_every_stored_secret_with_the_newest_key(stores, owner, settings, capsys):
    """After a rotation (NEW put first), `callrail-sync reseal` rewrites signing keys, secrets
    and previous secrets (and plain ones from before sealing) so that OLD can be dropped."""
    from callrail_sync.cli.main import main
    from callrail_sync.cli.ops import Context

    before = on_database(stores.db, sealer=Sealer(OLD))
    first, _ = before.notifications.configure(owner, "https://example.com/h", ["sync.failed"])
    rotated = before.notifications.rotate(owner, grace_seconds=3600)
    registration = Registration(
        callrail_account_id="ACC" + "2" * 32,
        company_id="COM" + "2" * 32,
        integration_id="2",
        signing_key="fedcba9876543210fedcba9876543210",
    )
    before.receivers.register(owner, registration)
    plain = Registration(**{**registration.model_dump(), "company_id": "COM" + "3" * 32})
    on_database(stores.db).receivers.register(owner, plain)  # stored before sealing: plain
    assert stores.db[RECEIVERS].find_one({"_id": plain.company_id})["signing_key"] == (
        plain.signing_key
    )
    both = settings.model_copy(update={"secrets_keys": f"{NEW},{OLD}"})
    ctx = Context(both, given_stores=on_database(stores.db, sealer=Sealer(both.secrets_keys)))
    assert main(["reseal"], ctx) == 0
    assert "2 signing keys, 1 notification callbacks" in capsys.readouterr().out
    after = on_database(stores.db, sealer=Sealer(NEW))  # OLD dropped
    config = after.notifications.config(owner)
    assert config.secret.get_secret_value() == rotated.secret.get_secret_value()
    assert config.previous_secret.get_secret_value() == first.secret.get_secret_value()
    for reg in (registration, plain):
        assert after.receivers.get(reg.company_id).signing_key == reg.signing_key
        assert (
            stores.db[RECEIVERS]
            .find_one({"_id": reg.company_id})["signing_key"]
            .startswith("fernet:")
        )
    dev = settings.model_copy(update={"secrets_keys": "", "development": True})
    assert main(["reseal"], Context(dev, given_stores=on_database(stores.db))) == 2
    assert "reseal needs SECRETS_KEYS" in capsys.readouterr().err
