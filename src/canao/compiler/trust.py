"""Which compiled builds may be loaded as code: those this machine built, proven by a signature with a local key.

A build's shared library is native code, and dlopen runs its constructors
before canao can check anything. An artifact's manifest proves only that its
files agree with each other, not who made them: anyone who replaces
libmodel.so can update the manifest's checksum too. So every build that
canao compiles gets its manifest signed with HMAC-SHA256 under a secret key
kept in the user's canao config directory ($CANAO_CONFIG_DIR, else
$XDG_CONFIG_HOME/canao, else ~/.config/canao; file `build-key`, mode 0600,
created on first use). A build whose signature is missing or made with
another key is treated as data from elsewhere: the loader compiles the
artifact again from model.safetensors (plain tensors, parsed by safetensors)
with canao's own code generator, unless the user passes `--trust-artifact`.

Example::

    manifest["signature"] = sign_manifest(manifest)
    assert signed_here(manifest)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

from canao.errors import CanaoError

KEY_FILE = "build-key"
KEY_BYTES = 32
SIGNATURE = "signature"  # the manifest field that holds the hex HMAC


class TrustKeyError(CanaoError, OSError):
    """The local signing key cannot be read or created."""


def config_dir() -> Path:
    """The user's canao config directory (the signing key lives here, never in an artifact or cache)."""
    if os.environ.get("CANAO_CONFIG_DIR"):
        return Path(os.environ["CANAO_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "canao"


def local_key() -> bytes:
    """This machine's signing key, created (mode 0600, exclusively) on first use."""
    path = config_dir() / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read_key(path)
    except OSError as err:
        raise TrustKeyError(
            f"{path}: cannot create the build-signing key ({err.strerror or err}); set CANAO_CONFIG_DIR to a "
            "writable directory (a read-only home, a container), or pass --trust-artifact to load builds unsigned."
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(KEY_BYTES))
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, NotADirectoryError):  # not made yet (or cannot be): local_key makes it, or says why
        raise FileNotFoundError(str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise TrustKeyError(
            f"{path}: the build-signing key cannot be read ({err}); delete it to make a new one."
        ) from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise TrustKeyError(
            f"{path}: not a build-signing key ({KEY_BYTES} hex bytes); delete it and canao makes a new one "
            "(builds signed with the old key are then compiled again on load)."
        )
    return key


def _payload(manifest: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature covers: every field of the manifest but the signature itself."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign_manifest(manifest: Mapping[str, Any]) -> str:
    return hmac.new(local_key(), _payload(manifest), hashlib.sha256).hexdigest()


def signed_here(manifest: Mapping[str, Any]) -> bool:
    """Whether `manifest` carries a signature made with this machine's key (constant-time comparison)."""
    given = manifest.get(SIGNATURE)
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given, sign_manifest(manifest))


__all__ = ["KEY_FILE", "SIGNATURE", "TrustKeyError", "config_dir", "local_key", "sign_manifest", "signed_here"]
