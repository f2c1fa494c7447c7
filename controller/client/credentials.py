"""The credentials a request carries: a bearer token (fixed, or from a file) or an X.509 certificate.

Files are re-read when they change (inode, mtime or size), not on a timer: a rotated token or
proxy certificate works on the very next request, while an unchanged file costs one ``stat``.
Whatever goes wrong with a file (missing, unreadable, not UTF-8, empty, not a PEM key pair) is
one ``CredentialError`` naming the file and the problem, raised before anything is sent; a
problem is reported again on every call until the file is fixed, and never shows the content.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

from pydantic import SecretStr

from controller.errors import CredentialError

T = TypeVar("T")


class Unusable(Exception):
    """Raised by a loader for a file that was read but cannot serve (e.g. an empty token file)."""


class _Stamp(NamedTuple):
    inode: int
    mtime_ns: int
    size: int


class WatchedFile(Generic[T]):
    """A credential file and what ``load`` made of it, loaded again whenever the file changes.

    A failed load keeps nothing: the next call tries again, so a file caught half-written by a
    rotation works as soon as the rotation is complete.
    """

    def __init__(self, path: Path, what: str, load: Callable[[Path], T]) -> None:
        self.path = path
        self._what = what
        self._load = load
        self._stamp: _Stamp | None = None
        self._value: T | None = None

    def __repr__(self) -> str:
        return f"WatchedFile({self._what} {self.path})"

    def current(self) -> T:
        """What the file holds now; raises ``CredentialError`` when it cannot be used."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise self.error(_reason(exc)) from None
        stamp = _Stamp(info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp != self._stamp or self._value is None:
            try:
                value = self._load(self.path)
            except (Unusable, OSError, ValueError, ssl.SSLError) as exc:  # UnicodeDecodeError is a ValueError
                raise self.error(_reason(exc)) from None
            self._value, self._stamp = value, stamp
        return self._value

    def error(self, problem: str) -> CredentialError:
        return CredentialError(f"{self._what} {self.path}: {problem}")


def _reason(exc: BaseException) -> str:
    """What is wrong, in words, without echoing the file's content."""
    if isinstance(exc, Unusable):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, ssl.SSLError):
        return f"not a PEM certificate with its private key ({exc.reason or 'unreadable'})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


class TokenSource:
    """The current bearer token: a fixed one, or the content of a token file."""

    def __init__(self, *, token: SecretStr | None = None, path: Path | None = None) -> None:
        self._token = token
        self._file = None if path is None else WatchedFile(path, "token file", self._read)
        self._last: SecretStr | None = token

    def __repr__(self) -> str:
        source = "token" if self._token is not None else f"file {self._file.path}" if self._file else "none"
        return f"TokenSource({source})"

    @property
    def configured(self) -> bool:
        return self._token is not None or self._file is not None

    @property
    def last(self) -> SecretStr | None:
        """The token most recently sent (without touching the file): what an echo could contain."""
        return self._last

    def current(self) -> SecretStr | None:
        """The token to send now, or ``None`` when no token is configured."""
        if self._token is not None or self._file is None:
            return self._token
        self._last = self._file.current()
        return self._last

    @staticmethod
    def _read(path: Path) -> SecretStr:
        text = path.read_bytes().decode("utf-8").strip()
        if not text:
            raise Unusable("is empty")
        return SecretStr(text)


class CertificateSource:
    """An X.509 proxy certificate (PEM with its key) loaded into one ``ssl.SSLContext``.

    The context is created at once and handed to httpx; the file is loaded into it on the first
    request and again whenever it changes, so a renewed proxy certificate is used for every new
    connection without rebuilding the client. A vanished file fails each call, even though the
    context still holds the old certificate.
    """

    def __init__(self, path: Path, *, verify: bool = True) -> None:
        self.context = ssl.create_default_context()
        if not verify:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self._file = WatchedFile(path, "certificate", self._load)

    def __repr__(self) -> str:
        return f"CertificateSource({self._file.path})"

    def check(self) -> None:
        """Make sure the context holds the file's current certificate; ``CredentialError`` if it cannot."""
        self._file.current()

    def status(self, login: object = None) -> CredentialStatus:
        """The certificate's file (and canfar record, if it came from one) and its notAfter."""
        where = getattr(login, "where", None)
        source = f"certificate {self._file.path}" + (f" ({where})" if where else "")
        expiry = certificate_expiry(self._file.path)
        problem = None
        try:
            self.check()
        except CredentialError as error:
            problem = str(error)
        if problem is None and expiry is not None and expiry <= time.time():
            problem = f"certificate {self._file.path} expired; renew it (`canfar auth login`)"
        return CredentialStatus(kind="x509", source=source, expiry_kind="x509", expiry=expiry,
                                usable=problem is None, problem=problem)

    def _load(self, path: Path) -> bool:
        self.context.load_cert_chain(str(path))
        return True


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    """What the controller knows about its credential, safe to show: never the credential itself.

    ``kind`` is ``token``, ``x509`` or ``oidc``; ``expiry_kind`` names what ``expiry`` is the end
    of (``x509``, ``oidc_refresh`` or ``oidc_access``), as the expiry metric labels it.
    """

    kind: str
    source: str
    expiry_kind: str | None = None
    expiry: float | None = None
    usable: bool = True
    problem: str | None = None


def jwt_claim(token: SecretStr | None, claim: str) -> object:
    """A claim of a JWT's payload, read without verifying it (only to date the token); ``None`` if absent."""
    if token is None:
        return None
    parts = token.get_secret_value().split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return payload.get(claim) if isinstance(payload, dict) else None


def certificate_expiry(path: Path) -> float | None:
    """The notAfter (epoch seconds) of the first certificate in a PEM file; ``None`` if unreadable.

    Read from the DER structure directly (Certificate > TBSCertificate > Validity), so that the
    expiry metric needs no cryptography library at run time.
    """
    try:
        text = path.read_text(encoding="ascii", errors="replace")
        body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
        der = base64.b64decode("".join(body.split()))
        tbs = _der_children(_der_children(der)[0])
        fields = tbs[1:] if tbs[0][0] == 0xA0 else tbs  # skip the explicit [0] version
        validity = _der_children(fields[3])  # serial, signature algorithm, issuer, validity
        return _der_time(validity[1])
    except (OSError, IndexError, ValueError, binascii.Error):
        return None


def _der_children(element: bytes) -> list[bytes]:
    """The elements (tag, length, value, whole) inside one constructed DER element."""
    content = _der_value(element)
    children, offset = [], 0
    while offset < len(content):
        length, start = _der_length(content, offset + 1)
        children.append(content[offset:start + length])
        offset = start + length
    return children


def _der_value(element: bytes) -> bytes:
    length, start = _der_length(element, 1)
    return element[start:start + length]


def _der_length(data: bytes, offset: int) -> tuple[int, int]:
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = first & 0x7F
    return int.from_bytes(data[offset + 1:offset + 1 + count], "big"), offset + 1 + count


def _der_time(element: bytes) -> float:
    text = _der_value(element).decode("ascii").rstrip("Z")
    if element[0] == 0x17:  # UTCTime, YYMMDDHHMMSS: 50..99 are the 1900s (RFC 5280)
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
