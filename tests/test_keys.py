from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from anima.config import Settings, load_settings
from anima.errors import BadInput, ProvenanceError
from anima.provenance import keys, watermark
from anima.provenance.keys import identity_from_settings, init_identity, load_identity


def test_identity_has_the_shape_c2pa_requires(settings: Settings) -> None:
    leaf, ca = x509.load_pem_x509_certificates(settings.signing_cert.read_bytes())
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in list(eku)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.issuer == ca.subject != leaf.subject  # not self-signed
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.subject.rfc4514_string() == "O=Test Studio,CN=Test Studio Anima signer"


def test_private_keys_are_owner_only(settings: Settings) -> None:
    for name in ("signing.key", "ca.key"):
        mode = stat.S_IMODE((settings.keys_dir / name).stat().st_mode)
        assert mode == 0o600, name


def test_init_refuses_to_overwrite_without_force(settings: Settings) -> None:
    before = identity_from_settings(settings).fingerprint_sha256
    with pytest.raises(BadInput, match="already exists"):
        init_identity(settings)
    assert init_identity(settings, force=True).fingerprint_sha256 != before


def test_operator_chain_from_environment(tmp_path: Path, settings: Settings, monkeypatch) -> None:
    other = load_settings(tmp_path / "other-home")
    init_identity(other, org="Operator Inc")
    monkeypatch.setenv("ANIMA_SIGNING_CERT", str(other.signing_cert))
    monkeypatch.setenv("ANIMA_SIGNING_KEY", str(other.signing_key))
    assert "Operator Inc" in identity_from_settings(load_settings(settings.home)).subject


def test_mismatched_key_and_missing_identity_are_clear(tmp_path: Path, settings: Settings) -> None:
    other = load_settings(tmp_path / "other-home")
    init_identity(other)
    with pytest.raises(ProvenanceError, match="is not the key of the first certificate"):
        load_identity(settings.signing_cert, other.signing_key)
    with pytest.raises(ProvenanceError, match="anima keys init"):
        identity_from_settings(load_settings(tmp_path / "empty"))


def test_watermark_key_is_secret_owner_only_and_checked(settings: Settings, tmp_path: Path) -> None:
    path = keys.watermark_key_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = keys.load_watermark_key(path)
    assert key.algorithm == watermark.ALGORITHM and len(key.secret) == watermark.KEY_BYTES
    assert key.secret.hex() not in repr(key)
    assert keys.marking_key(settings) == key
    header, algorithm, key_id, secret = path.read_text().split()
    edited = tmp_path / "edited.key"
    edited.write_text(f"{header} {algorithm} {key_id} {'0' * len(secret)}\n")
    with pytest.raises(BadInput, match="does not match its key id"):
        keys.load_watermark_key(edited)
    edited.write_text("not a key\n")
    with pytest.raises(BadInput, match="not an Anima watermark key"):
        keys.load_watermark_key(edited)
    with pytest.raises(BadInput, match="no such watermark key"):
        keys.load_watermark_key(tmp_path / "missing.key")
    with pytest.raises(BadInput, match="already exists"):
        keys.init_watermark_key(settings)


def test_a_replaced_watermark_key_is_retired_and_still_read(settings: Settings, tmp_path: Path) -> None:
    old = keys.marking_key(settings)
    new = keys.init_watermark_key(settings, force=True)
    assert new.key_id != old.key_id and keys.marking_key(settings) == new
    read = keys.reading_keys(settings)
    assert [k.key_id for k in read] == [new.key_id, old.key_id, watermark.LEGACY_KEY.key_id]
    other = load_settings(tmp_path / "other-home")
    keys.init_watermark_key(other)
    given = keys.watermark_key_path(other)
    assert keys.reading_keys(settings, [given])[-2] == keys.marking_key(other)
    assert len(keys.reading_keys(settings, [given, given])) == 4  # each key once


def test_a_home_without_a_watermark_key_cannot_mark(tmp_path: Path) -> None:
    bare = load_settings(tmp_path / "bare")
    init_identity(bare)
    with pytest.raises(ProvenanceError, match="anima keys init"):
        keys.marking_key(bare)
    assert keys.reading_keys(bare) == [watermark.LEGACY_KEY]
