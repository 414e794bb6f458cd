"""A throw-away service-account key: signs v4 URLs for the emulator (which does not check
signatures) and exercises the key-loading path of the credentials block. Never a real key."""

from __future__ import annotations

import functools
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@functools.cache
def throwaway_service_account(project: str = "flowport-test") -> str:
    """Service-account key JSON around a fresh local RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": project,
            "private_key_id": "flowport-throwaway",
            "private_key": pem,
            "client_email": f"flowport-tests@{project}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )
