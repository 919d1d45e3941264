"""The checkpoint serializer every saver of this package uses by default: strict, optionally encrypted.

Checkpoints are read back from a store that someone else may be able to
write to (a shared Redis, a copied SQLite file), so reading one must never
run code. ``checkpoint_serde()`` returns LangGraph's own
``JsonPlusSerializer`` locked down:

- ``pickle_fallback=False``: a value stored as ``pickle`` is refused with a
  clear error, never unpickled;
- a strict msgpack allowlist: only LangGraph's ``SAFE_MSGPACK_TYPES``
  (datetimes, UUIDs, decimals, sets, messages, ``Send``, ``Interrupt``,
  ``Command``, ...) plus the types the caller lists in ``allowed_types`` are
  rebuilt; any other type named in a blob comes back as its inert plain data
  (dict, list or string) and LangGraph logs that it was blocked;
- no JSON constructor allowlist: LangChain-style ``{"lc": 2, "type":
  "constructor", ...}`` documents of the legacy ``json`` format are revived
  only for the same safe types, otherwise refused.

With an encryption key (``encryption_key=`` or the ``MIGRATION_KIT_CHECKPOINT_KEY``
environment variable) it is wrapped in LangGraph's ``EncryptedSerializer``
with AES (EAX mode, authenticated), which needs ``pycryptodome``
(``pip install 'migration-kit[crypto]'``). A key is 16, 24 or 32 bytes:
``bytes``, or a ``str`` in hex (``openssl rand -hex 32``) or base64
(``openssl rand -base64 32``). Reading with a wrong key, or a value that was
tampered with, raises ``ConfigurationError`` naming the likely cause.
Values written without encryption stay readable after a key is configured
(so a store can be switched on in place); new writes are encrypted.
"""

from __future__ import annotations

import base64
import binascii
import os
import string
from collections.abc import Iterable
from typing import Any

from langgraph.checkpoint.serde.base import CipherProtocol, SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from migration_errors import ConfigurationError

__all__ = ["ENV_CHECKPOINT_KEY", "AllowedTypes", "StrictSerializer", "checkpoint_serde", "parse_key"]

ENV_CHECKPOINT_KEY = "MIGRATION_KIT_CHECKPOINT_KEY"
"""Environment variable holding the checkpoint encryption key (hex or base64)."""

AllowedTypes = Iterable[type | tuple[str, str]]
"""Extra types checkpoints may rebuild: classes, or ``(module, qualified name)`` pairs."""

_KEY_LENGTHS = (16, 24, 32)


class StrictSerializer(JsonPlusSerializer):
    """LangGraph's ``JsonPlusSerializer`` with pickle off and a strict msgpack allowlist.

    Args:
        allowed_types: Types to rebuild beside LangGraph's safe ones, as classes
            or ``(module, name)`` pairs.
    """

    def __init__(self, allowed_types: AllowedTypes = ()) -> None:
        extra = tuple(_type_key(t) for t in allowed_types)
        super().__init__(
            pickle_fallback=False,
            allowed_json_modules=None,
            # None: only SAFE_MSGPACK_TYPES; a tuple: those plus the listed ones.
            allowed_msgpack_modules=extra or None,
        )

    def __repr__(self) -> str:
        allowed = self._allowed_msgpack_modules
        extra = sorted(".".join(k) for k in allowed) if isinstance(allowed, set) else []
        return f"StrictSerializer(allowed_types={extra})"

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Decode one stored value; refuse pickle and say so when a value is encrypted."""
        kind = data[0]
        if kind == "pickle":
            raise ConfigurationError(
                "refused to read a checkpoint value stored as pickle: unpickling data from a store can run "
                "arbitrary code, so migration-kit never does it (the value was written by another serializer, "
                "or crafted)"
            )
        if "+" in kind:
            raise ConfigurationError(
                f"a checkpoint value is encrypted ({kind!r}) but no key is configured: set {ENV_CHECKPOINT_KEY} "
                "or pass encryption_key= to the saver"
            )
        return super().loads_typed(data)


class _ClearErrors(CipherProtocol):
    """Wraps a cipher so a failed decryption says what to check instead of 'MAC check failed'."""

    def __init__(self, inner: CipherProtocol) -> None:
        self._inner = inner

    def __repr__(self) -> str:
        return "AES-EAX cipher (key hidden)"

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        return self._inner.encrypt(plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        if ciphername != "aes":
            raise ConfigurationError(
                f"a checkpoint value is encrypted with {ciphername!r}, not AES; it was written by another serializer"
            )
        try:
            return self._inner.decrypt(ciphername, ciphertext)
        except (ValueError, KeyError, IndexError):
            raise ConfigurationError(
                "cannot decrypt a checkpoint value: the encryption key is not the one it was written with "
                f"(check {ENV_CHECKPOINT_KEY} or encryption_key=), or the stored value was altered"
            ) from None


def parse_key(key: bytes | str, *, source: str = "encryption_key") -> bytes:
    """Return an AES key from raw bytes, or from a hex or base64 string; never echo it in an error.

    Raises:
        ConfigurationError: the key does not decode to 16, 24 or 32 bytes.
    """
    if isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
    elif isinstance(key, str):
        text = key.strip()
        raw = b""
        if len(text) in (32, 48, 64) and all(c in string.hexdigits for c in text):
            raw = bytes.fromhex(text)
        else:
            padded = text + "=" * (-len(text) % 4)
            try:
                raw = base64.b64decode(padded, altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
    else:
        raise ConfigurationError(f"{source} must be bytes or a hex/base64 string, not {type(key).__name__}")
    if len(raw) not in _KEY_LENGTHS:
        raise ConfigurationError(
            f"{source} is not a valid AES key: it must be 16, 24 or 32 bytes, given as bytes, hex "
            "(openssl rand -hex 32) or base64 (openssl rand -base64 32)"
        )
    return raw


def checkpoint_serde(
    serde: SerializerProtocol | None = None,
    *,
    allowed_types: AllowedTypes = (),
    encryption_key: bytes | str | None = None,
) -> SerializerProtocol:
    """The serializer a saver uses: ``serde`` or the strict default, with extra types and encryption.

    Args:
        serde: A serializer of your own; ``None`` for ``StrictSerializer``.
        allowed_types: Extra types to rebuild (classes or ``(module, name)``);
            with your own ``serde`` it must be a ``JsonPlusSerializer``.
        encryption_key: AES key (16/24/32 bytes, or hex/base64 text); when
            ``None``, ``MIGRATION_KIT_CHECKPOINT_KEY`` is read.

    Raises:
        ConfigurationError: a bad key, ``pycryptodome`` missing, or options that do not fit ``serde``.
    """
    allowed = tuple(allowed_types or ())
    if serde is None:
        base: SerializerProtocol = StrictSerializer(allowed)
    elif allowed:
        if isinstance(serde, JsonPlusSerializer):
            base = serde.with_msgpack_allowlist(_type_key(t) for t in allowed)
        else:
            raise ConfigurationError(
                f"allowed_types= needs a JsonPlusSerializer, not {type(serde).__name__}: "
                "register the types on your serializer instead"
            )
    else:
        base = serde
    source = "encryption_key"
    if encryption_key is None and os.environ.get(ENV_CHECKPOINT_KEY):
        encryption_key, source = os.environ[ENV_CHECKPOINT_KEY], ENV_CHECKPOINT_KEY
    if encryption_key is None or encryption_key == "" or encryption_key == b"":
        return base
    if isinstance(base, EncryptedSerializer):
        if source == ENV_CHECKPOINT_KEY:
            return base  # the caller's own encrypted serializer wins over the environment
        raise ConfigurationError("serde is already an EncryptedSerializer; pass encryption_key= or serde=, not both")
    key = parse_key(encryption_key, source=source)
    try:
        import Crypto.Cipher.AES  # noqa: F401 - only to fail early with advice
    except ImportError:
        raise ConfigurationError(
            "checkpoint encryption needs pycryptodome: pip install 'migration-kit[crypto]'"
        ) from None
    encrypted = EncryptedSerializer.from_pycryptodome_aes(base, key=key)
    encrypted.cipher = _ClearErrors(encrypted.cipher)
    return encrypted


def _type_key(t: type | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(t, type):
        return (t.__module__, t.__name__)  # what LangGraph's encoder records
    if isinstance(t, tuple) and len(t) == 2 and all(isinstance(x, str) for x in t):
        return t
    raise ConfigurationError(f"allowed_types entries are classes or (module, name) pairs, not {t!r}")
