"""The sealtune error tree.

Every error sealtune raises on purpose is a :class:`SealtuneError`. Messages
name the file, field or key involved and say what to do; they never carry
payload text, plaintext, passphrases or key material. The CLI maps each class
to an exit status (0 ok, 1 other error, 2 usage, 3 integrity/attestation, 4 a
release gate that did not pass) and
prints only ``str(error)`` and ``error.hint``, never a raw traceback of a
foreign exception that could carry data.
"""

from __future__ import annotations


class SealtuneError(Exception):
    """Base class of every error sealtune raises deliberately.

    Args:
        message: what went wrong, naming the file, field or key (never data).
        hint: what the user can do about it.
        code: a short token (``[a-z0-9_]``) naming a condition whose text carries no
            data, e.g. ``max_length_cuts_every_answer``. A sandbox reports only an
            error's class and this code to its parent (never the message), so the
            parent can still say what went wrong and how to fix it.
    """

    exit_code: int = 1
    prefix: str = "error"

    def __init__(self, message: str, *, hint: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def diagnostics(self) -> str:
        """Return the one- or two-line text the CLI shows for this error."""
        text = f"{self.prefix}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(SealtuneError):
    """The command line or API was used wrongly (bad option combination)."""

    exit_code = 2
    prefix = "usage"


class ConfigError(SealtuneError):
    """A configuration or policy file is missing, malformed or invalid.

    sealtune fails closed: a missing or invalid config is never replaced by a
    silent default.
    """

    prefix = "config"


class WorkspaceError(SealtuneError):
    """The workspace is missing, not initialised, or already initialised."""

    prefix = "workspace"


class KeyringError(SealtuneError):
    """A keyring backend failed or refused an operation (not tampering)."""

    prefix = "keyring"


class KeyNotFoundError(KeyringError):
    """The named key, or the requested version of it, does not exist."""


class KeyDestroyedError(KeyringError):
    """The key (or key version) was destroyed or retired; data only under it is unrecoverable.

    Exits 3, like an integrity failure: the data cannot be opened, and nothing
    the user retries will change that.
    """

    exit_code = 3
    default_hint = (
        "open it with another key it is wrapped for, or restore it from a copy sealed "
        "under a live key; to retire old versions safely, use 'sealtune keys rotate NAME "
        "--retire-old', which re-wraps every file the workspace knows first"
    )

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or self.default_hint)


class KeyInUseError(KeyringError):
    """A key version is not retired or destroyed because files still depend on it."""


class BackendUnavailableError(KeyringError):
    """A keyring backend is not configured, not installed or not reachable."""


class IntegrityError(SealtuneError):
    """Tampering, a wrong key or passphrase, or a bad signature was detected.

    Deliberately opaque, like ``cryptography``'s ``InvalidTag``: the message
    says which file or entry failed, never why at byte level.
    """

    exit_code = 3
    prefix = "integrity"


class AttestationError(SealtuneError):
    """An attestation report failed verification."""

    exit_code = 3
    prefix = "attestation"


class AttestationUnavailable(AttestationError):
    """The attestation endpoint could not be reached or answered 5xx (retryable).

    Not a verification failure: nothing was verified, nothing was sent.
    """


class MalformedJSON(SealtuneError):
    """Input that must be JSON is not: bad syntax, too deep, or not valid Unicode.

    Attributes:
        code: the machine-readable reason: ``invalid_json``, ``json_too_deep``
            or ``invalid_unicode``.
    """

    prefix = "input"
    code: str

    def __init__(self, message: str, *, code: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, code=code)


class DiskFullError(SealtuneError):
    """A write ran out of space (or quota, or the file size limit); names the file written.

    Whatever was being written was removed or never moved into place.
    """

    def __init__(self, path: object, reason: str = "No space left on device", *,
                 hint: str | None = None) -> None:
        super().__init__(f"{path}: {reason}",
                         hint=hint or "free space on that file system (or write somewhere "
                                      "else) and run the command again; no partial output "
                                      "was kept")
        self.path = str(path)


class PolicyViolation(SealtuneError):
    """A policy forbids the requested action."""

    prefix = "policy"


class GateFailed(SealtuneError):
    """The release gate ran and the model did not pass it (``sealtune assess``).

    Not a malfunction: every probe the policy requires ran, and at least one
    verdict is ``fail``. Exits 4, so that a release script can tell "the
    model is not fit for release" from an error (1), a usage mistake (2) and
    tampering (3). The message names the failed probes, never data.
    """

    exit_code = 4
    prefix = "gate"


class AssessError(SealtuneError):
    """The release gate could not measure: its sandboxed probes failed (by error class only).

    Not a verdict on the model (that is :class:`GateFailed`): nothing was
    judged, no report was written.
    """

    prefix = "assess"


class StorageError(SealtuneError):
    """A blob or metadata store is unreachable, misconfigured, or refused a request."""

    prefix = "storage"


class BlobExistsError(StorageError):
    """An immutable write found its key taken: stored artifacts are never overwritten."""


class ConflictError(StorageError):
    """A metadata record changed since it was read (compare-and-set lost a race)."""
