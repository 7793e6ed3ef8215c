"""Signing identity: a local CA and an ES256 leaf certificate in the shape c2pa accepts.

c2pa refuses self-signed signing certificates, so ``anima keys init`` makes two: a CA that
operators may choose to trust, and a leaf (KeyUsage digitalSignature, EKU emailProtection,
Authority Key Identifier) signed by it. The chain file holds leaf then CA, as c2pa expects.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from anima.config import Settings
from anima.errors import BadInput, ProvenanceError
from anima.ledger.signing import LedgerKey
from anima.provenance.watermark import LEGACY_KEY, WatermarkKey

CA_VALIDITY_DAYS = 3650
LEAF_VALIDITY_DAYS = 825


@dataclass(frozen=True)
class SigningIdentity:
    """Where a signing chain and key live, and what the leaf says about its owner."""

    chain_path: Path
    key_path: Path
    subject: str
    issuer: str
    not_after: dt.datetime
    fingerprint_sha256: str

    def chain_pem(self) -> bytes:
        return self.chain_path.read_bytes()

    def key_pem(self) -> bytes:
        return self.key_path.read_bytes()


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        ]
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the first byte (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init_identity(
    settings: Settings, org: str = "Anima local studio", force: bool = False
) -> SigningIdentity:
    """Create the local CA and signing certificate under ``settings.keys_dir``."""
    keys_dir = settings.keys_dir
    chain_path, key_path = keys_dir / "chain.pem", keys_dir / "signing.key"
    # Any part of an identity counts: a key without its chain may still be the one outputs were
    # signed with, and a new one would silently replace it.
    existing = [p for p in (chain_path, key_path, keys_dir / "ca.key") if p.exists()]
    if existing and not force:
        raise BadInput(
            f"a signing identity already exists in {keys_dir} ({', '.join(p.name for p in existing)}; "
            "replace it only on purpose, with force)"
        )
    if not org.strip():
        raise BadInput("the organisation name must not be empty")

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{org} Anima CA", org)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{org} Anima signer", org))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=LEAF_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    keys_dir.mkdir(parents=True, exist_ok=True)
    _write_private(keys_dir / "ca.key", _key_pem(ca_key))
    _write_private(key_path, _key_pem(leaf_key))
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    (keys_dir / "ca.pem").write_bytes(ca_pem)
    chain_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
    return load_identity(chain_path, key_path)


def load_identity(chain_path: Path, key_path: Path) -> SigningIdentity:
    """Read a signing chain (leaf first) and its key, checking that they belong together."""
    if not chain_path.exists() or not key_path.exists():
        raise ProvenanceError(
            f"no signing identity at {chain_path} (run `anima keys init`, or set "
            "ANIMA_SIGNING_CERT and ANIMA_SIGNING_KEY to your own chain and key)"
        )
    try:
        certs = x509.load_pem_x509_certificates(chain_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ProvenanceError(f"cannot read signing identity {chain_path}: {exc}") from exc
    leaf = certs[0]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ProvenanceError(f"{key_path}: Anima signs with ES256, which needs a P-256 EC key")
    if key.public_key().public_numbers() != leaf.public_key().public_numbers():
        raise ProvenanceError(f"{key_path} is not the key of the first certificate in {chain_path}")
    if len(certs) < 2:
        raise ProvenanceError(
            f"{chain_path} holds one certificate; c2pa needs the leaf followed by its issuer"
        )
    return SigningIdentity(
        chain_path=chain_path,
        key_path=key_path,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
    )


def identity_from_settings(settings: Settings) -> SigningIdentity:
    return load_identity(settings.signing_cert, settings.signing_key)


def ledger_key(identity: SigningIdentity) -> LedgerKey:
    """The operator's key as the ledger uses it: sign audit events and checkpoints with the private
    key, check them against the leaf certificate's public key."""
    leaf = x509.load_pem_x509_certificates(identity.chain_pem())[0]
    private = serialization.load_pem_private_key(identity.key_pem(), password=None)
    public = leaf.public_key()
    elliptic = isinstance(public, ec.EllipticCurvePublicKey)
    if not isinstance(private, ec.EllipticCurvePrivateKey) or not elliptic:
        raise ProvenanceError(f"{identity.key_path}: the ledger signs with ES256, which needs a P-256 EC key")
    return LedgerKey(public_key=public, private_key=private, fingerprint=identity.fingerprint_sha256)


WATERMARK_KEY_HEADER = "anima-watermark-key"
WATERMARK_KEY_MAX_BYTES = 512  # a key file is one short line; anything longer is something else


def watermark_key_path(settings: Settings) -> Path:
    return settings.keys_dir / "watermark.key"


def retired_watermark_keys_dir(settings: Settings) -> Path:
    """Where replaced watermark keys go: still read, so outputs marked before a rotation verify."""
    return settings.keys_dir / "watermark-retired"


def write_watermark_key(path: Path, key: WatermarkKey) -> None:
    """One line, ``anima-watermark-key <algorithm> <key id> <hex secret>``, mode 0600."""
    _write_private(path, f"{WATERMARK_KEY_HEADER} {key.algorithm} {key.key_id} {key.secret.hex()}\n".encode())


def load_watermark_key(path: Path) -> WatermarkKey:
    """Read a watermark key file, checking that its key id matches its secret (a truncated or edited
    file is refused, not read as some other key)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(WATERMARK_KEY_MAX_BYTES + 1)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such watermark key file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the watermark key ({exc.strerror or exc})") from None
    fields = head.decode("ascii", errors="replace").split()
    if len(head) > WATERMARK_KEY_MAX_BYTES or len(fields) != 4 or fields[0] != WATERMARK_KEY_HEADER:
        raise BadInput(f"{path}: not an Anima watermark key file")
    try:
        key = WatermarkKey(bytes.fromhex(fields[3]), fields[1])
    except (ValueError, ProvenanceError) as exc:
        raise BadInput(f"{path}: not a valid watermark key ({exc})") from None
    if key.key_id != fields[2]:
        raise BadInput(f"{path}: the watermark key does not match its key id (edited or damaged)")
    return key


def init_watermark_key(settings: Settings, force: bool = False) -> WatermarkKey:
    """Create this deployment's secret watermark key; with ``force`` the old one is retired, not lost."""
    path = watermark_key_path(settings)
    if path.exists():
        if not force:
            raise BadInput(
                f"a watermark key already exists at {path} (replace it only on purpose, with force)"
            )
        old = load_watermark_key(path)
        retired = retired_watermark_keys_dir(settings)
        retired.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(path, retired / f"{old.key_id}.key")
    key = WatermarkKey.generate()
    write_watermark_key(path, key)
    return key


def marking_key(settings: Settings) -> WatermarkKey:
    """The key new outputs are marked with."""
    path = watermark_key_path(settings)
    if not path.exists():
        raise ProvenanceError(f"no watermark key at {path} (run `anima keys init`)")
    return load_watermark_key(path)


def reading_keys(settings: Settings, extra: Sequence[Path] = ()) -> list[WatermarkKey]:
    """Every key a check reads with: this home's key and its retired ones, the configured and given
    key files, and the public key of algorithm 1 (outputs of earlier releases); each once."""
    own = [watermark_key_path(settings)] if watermark_key_path(settings).exists() else []
    retired_dir = retired_watermark_keys_dir(settings)
    retired = sorted(retired_dir.glob("*.key")) if retired_dir.is_dir() else []
    found: dict[str, WatermarkKey] = {}
    for path in [*own, *retired, *settings.watermark_keys, *(Path(p) for p in extra)]:
        key = load_watermark_key(Path(path))
        found.setdefault(key.key_id, key)
    found.setdefault(LEGACY_KEY.key_id, LEGACY_KEY)
    return list(found.values())
