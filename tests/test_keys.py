from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from anima.config import Settings, load_settings
from anima.errors import BadInput, ProvenanceError
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
