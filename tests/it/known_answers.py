#!/usr/bin/env python3
"""Known answers for the card-number keys, computed without the service's code.

The service derives three things from the keys under `keys/pan/`:

- a card's fingerprint: "v1:" + hex HMAC-SHA-256(fingerprint key, digits);
- the keyed digest of outside bytes: "v1:" + hex HMAC-SHA-256(digest key, bytes), where
  the digest key is HMAC-SHA-256(fingerprint key, "ctp-issuer: digest of outside bytes");
  a list of parts is digested as the concatenation of (8-byte big-endian length, part);
- a sealed card number: "v1:" + base64 (standard alphabet, no padding) of
  nonce (12 bytes) || AES-256-GCM(encryption key, digits, aad = "kit:<tenant>/<kitNo>").

This script computes them with Python's `hmac`/`hashlib` and `cryptography`, for the
development keys and fixed inputs, and prints them as the Rust constants that
`tests/it/known_answers.rs` compares the service's values with. Run it from the
repository root:

    python3 tests/it/known_answers.py            # print the constants
    python3 tests/it/known_answers.py --verify   # check the ones written in known_answers.rs

A change in how the service derives any of them then fails those tests, instead of
passing every test that compares the service's values with each other while every card
stored before the change stops matching.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import re
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPO = Path(__file__).resolve().parents[2]
RUST = Path(__file__).with_suffix(".rs")

FINGERPRINT_KEY = bytes.fromhex((REPO / "keys/pan/fingerprint-v1.key").read_text().strip())
ENCRYPTION_KEY = bytes.fromhex((REPO / "keys/pan/encryption-v1.key").read_text().strip())
DIGEST_LABEL = b"ctp-issuer: digest of outside bytes"

CARDS = ["4111111111111111", "4012888888881881", "5555555555554444"]
DIGESTED = b'{"encryptedData":"eyJraWQiOiI3MTVFQTI1NyJ9.e30.c2ln"}'
PARTS = [b"POST", b"/click-to-pay/v1/registerEntityAndKit", b'{"entityId":"E1","kitNo":"K1"}']
SEAL_NONCE = bytes(range(12))
SEAL_CARD = "4111111111111111"
SEAL_CONTEXT = b"kit:DEMOBANK/KIT-000001"


def hmac_hex(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def digest(data: bytes) -> str:
    key = hmac.new(FINGERPRINT_KEY, DIGEST_LABEL, hashlib.sha256).digest()
    return "v1:" + hmac_hex(key, data)


def answers() -> dict[str, str]:
    out = {}
    for card in CARDS:
        out[f"FINGERPRINT_{card[-4:]}"] = "v1:" + hmac_hex(FINGERPRINT_KEY, card.encode())
    out["DIGEST_OF_BODY"] = digest(DIGESTED)
    out["DIGEST_OF_PARTS"] = digest(b"".join(struct.pack(">Q", len(p)) + p for p in PARTS))
    sealed = SEAL_NONCE + AESGCM(ENCRYPTION_KEY).encrypt(SEAL_NONCE, SEAL_CARD.encode(), SEAL_CONTEXT)
    out["SEALED_1111"] = "v1:" + base64.b64encode(sealed).decode().rstrip("=")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--verify", action="store_true", help=f"compare with the constants in {RUST.name}")
    args = parser.parse_args()
    expected = answers()
    if not args.verify:
        for name, value in expected.items():
            print(f'const {name}: &str = "{value}";')
        return 0
    text = RUST.read_text()
    wrong = []
    for name, value in expected.items():
        found = re.search(rf'const {name}: &str = "([^"]*)";', text)
        if not found or found.group(1) != value:
            wrong.append(name)
    if wrong:
        print(f"{RUST.name}: {', '.join(wrong)} differ from the independent computation", file=sys.stderr)
        return 1
    print(f"{RUST.name}: {len(expected)} known answers agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
