"""The operator's key as the ledger sees it: ES256 signatures over event hashes and checkpoints.

The ledger is core and never reads key files itself; the API loads the operator's signing key
and certificate (``anima.provenance.keys``) and hands them over as a :class:`LedgerKey`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True)
class LedgerKey:
    """Signs with ``private_key`` (absent: verify only) and verifies with ``public_key``, the
    operator's certificate key. ``fingerprint`` names the certificate in checkpoints."""

    public_key: ec.EllipticCurvePublicKey
    private_key: ec.EllipticCurvePrivateKey | None = None
    fingerprint: str = ""

    @property
    def can_sign(self) -> bool:
        return self.private_key is not None

    def sign(self, message: bytes) -> str:
        if self.private_key is None:
            raise ValueError("this ledger key can only verify")
        der = self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode("ascii")

    def verifies(self, message: bytes, signature: str | None) -> bool:
        if not signature:
            return False
        try:
            self.public_key.verify(
                base64.b64decode(signature, validate=True), message, ec.ECDSA(hashes.SHA256())
            )
        except (InvalidSignature, ValueError):
            return False
        return True
