"""Sealed fields: a bank account number is encrypted wherever it is stored or sent
(event stores, topics, read models) and unsealed only where a bank file is written; a
household's mobile number likewise, unsealed only where notify sends an SMS.

AES-256-GCM, key derived from LIFELINE_CIPHER_KEY, or in the embedded mode from a
secret generated once under the data directory, which every process of that Lifeline
shares. The sealed form is eventsourcing's AESCipher's (nonce, tag, ciphertext; base64),
made with `cryptography`'s AESGCM: a payment run unseals a million numbers, and this is
twenty times faster than building a pycryptodome cipher for each.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lifeline.domain.values import BankAccount, ContactPhone
from lifeline.settings import Settings


class Sealer:
    def __init__(self, secret: str):
        self.secret = secret  # a bank-file writer process builds its own Sealer from it
        self._aead = AESGCM(hashlib.sha256(b"lifeline-sealing\0" + secret.encode()).digest())

    def seal(self, text: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), None)  # ciphertext + tag
        return base64.urlsafe_b64encode(nonce + sealed[-16:] + sealed[:-16]).decode("ascii")

    def unseal(self, token: str) -> str:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if len(raw) < 28:
            raise ValueError("damaged sealed value")
        try:
            return self._aead.decrypt(raw[:12], raw[28:] + raw[12:28], None).decode("utf-8")
        except InvalidTag:
            raise ValueError("sealed value is damaged or sealed with another key") from None

    def account(self, channel: str, account_number: str, account_name: str) -> BankAccount:
        """A household's account as Lifeline keeps it: the number sealed at once, shown masked."""
        return BankAccount(channel=channel, account_name=account_name,
                           number_masked=BankAccount.mask(account_number),
                           number_sealed=self.seal(account_number))

    def contact(self, phone: str) -> ContactPhone:
        """A household's mobile number as Lifeline keeps it: sealed at once, shown masked."""
        return ContactPhone(phone_masked=ContactPhone.mask(phone), phone_sealed=self.seal(phone))


def sealer_for(settings: Settings) -> Sealer:
    return Sealer(lifeline_secret(settings))


def lifeline_secret(settings: Settings) -> str:
    """LIFELINE_CIPHER_KEY, or (embedded mode) the secret generated once under the data
    directory that stands in for it: bank accounts are sealed and stored events encrypted
    (lifeline.stores.eventstore) with keys derived from it."""
    if settings.cipher_key:
        return settings.cipher_key
    return generated_secret(settings.data_dir / "sealing.secret")


def generated_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> str:
    """The secret in `path`, made by `make` and written there (0600) the first time: the embedded
    default's stand-in for a secret an operator configures (JWT, sealing, Redis)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # Exclusive create: processes starting together agree on the first secret written.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(make())
    for _ in range(50):
        secret = path.read_text().strip()
        if secret:
            return secret
        time.sleep(0.01)  # the creator has not written it yet
    raise RuntimeError(f"{path} is empty")
