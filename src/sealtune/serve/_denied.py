"""The one exception for a refused request, defined once for ``auth`` and ``tokens``.

:mod:`~sealtune.serve.auth` imports :mod:`~sealtune.serve.tokens` and both
raise :class:`Denied`, so it lives here, below both, with no import cycle.
Import it from :mod:`sealtune.serve.auth`, which re-exports it.

What this protects against: denials answered or recorded inconsistently;
one type, which the app turns into a 401/403/413/415/429 response and a
``serve.denied`` ledger event wherever it is raised. What it does not: it
decides nothing, and it does not scrub its fields; callers must never put a
credential or request content in ``reason`` or ``message``.
"""

from __future__ import annotations

ANONYMOUS = "anonymous"


class Denied(Exception):
    """A request refused by authentication, authorisation, rate limiting or policy.

    Attributes:
        status: 401, 403, 413, 415 or 429.
        reason: a short code for logs and the ledger (never data).
        message: what the caller reads.
        actor: the key id, or ``anonymous``.
        retry_after: seconds, for 429.
    """

    def __init__(self, status: int, reason: str, message: str, *, actor: str = ANONYMOUS,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.message = status, reason, message
        self.actor, self.retry_after = actor, retry_after
