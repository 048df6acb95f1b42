"""The errors of the e2e-v1 protocol that a caller may act on.

What they protect against: a client or server treating a retired key, a
replayed request or an unusable key configuration like any other failure;
each says what to do (re-attest, or suspect the path). What they do not:
carry detail about why a message failed to authenticate (that is a plain
:class:`~sealtune.errors.IntegrityError`, opaque on purpose).
"""

from __future__ import annotations

from sealtune.errors import AttestationError, IntegrityError


class StaleKeyError(AttestationError):
    """The request names a server key that the server does not (or no longer) hold."""


class ReplayError(IntegrityError):
    """A request whose encapsulated key this server has already opened (a replay)."""


class KeyConfigError(AttestationError):
    """A server key configuration is malformed or offers nothing this client speaks."""

