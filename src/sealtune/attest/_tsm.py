"""The kernel's configfs-tsm report interface (Linux >= 6.7), shared by SEV-SNP and TDX.

``/sys/kernel/config/tsm/report/<name>/``: write 64 bytes to ``inblob``, read
the signed report from ``outblob`` (and, for SEV-SNP, the certificate table
from ``auxblob``); ``generation`` counts writes, so reading it after the
write and again after the reads detects another writer racing on the same
entry (Documentation/ABI/testing/configfs-tsm). Each request uses its own
fresh entry, removed afterwards.

This is the I/O boundary of the TEE providers: :class:`Tsm` is the
interface, :class:`ConfigfsTsm` the real adapter. Untested on hardware.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sealtune.errors import AttestationError

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")


@dataclass(frozen=True)
class TsmReport:
    """What one configfs-tsm request returned."""

    provider: str
    outblob: bytes
    auxblob: bytes | None


class Tsm(Protocol):
    """Gets a hardware report binding 64 bytes of ``inblob``."""

    def report(self, inblob: bytes) -> TsmReport:
        """Return the report for ``inblob`` (64 bytes)."""
        ...


class ConfigfsTsm:
    """The real adapter over ``/sys/kernel/config/tsm/report``.

    Args:
        platform: the user-facing platform name for messages (``SEV-SNP``, ``TDX``).
        expected_provider: the kernel provider name (``sev_guest``, ``tdx_guest``).
        root: the configfs-tsm report directory.
    """

    def __init__(self, *, platform: str, expected_provider: str,
                 root: Path = TSM_REPORT_ROOT) -> None:
        self.platform, self.expected_provider, self.root = platform, expected_provider, root

    def report(self, inblob: bytes) -> TsmReport:
        """Create a fresh entry, request the report, and remove the entry.

        Raises:
            AttestationError: not on this platform, the kernel refused, or a
                concurrent writer changed the entry.
        """
        if len(inblob) != 64:
            raise AttestationError("configfs-tsm inblob must be 64 bytes")
        if not self.root.is_dir():
            raise AttestationError(f"not running on {self.platform}: {self.root} not found",
                                   hint="run inside a confidential VM with Linux >= 6.7 and "
                                        "configfs mounted, or use --attestation dev-software")
        entry = self.root / f"sealtune-{secrets.token_hex(8)}"
        try:
            entry.mkdir()
        except OSError as exc:
            raise AttestationError(f"cannot create a configfs-tsm entry in {self.root} "
                                   f"({type(exc).__name__})",
                                   hint="the server needs write access to configfs "
                                        "(usually root)") from None
        try:
            return self.collect(entry, inblob)
        finally:
            with contextlib.suppress(OSError):  # best effort: a leftover entry holds no secret
                entry.rmdir()

    def collect(self, entry: Path, inblob: bytes) -> TsmReport:
        """Run the request protocol on an existing entry directory."""
        try:
            provider = (entry / "provider").read_text().strip()
            if provider != self.expected_provider:
                raise AttestationError(f"not running on {self.platform}: configfs-tsm "
                                       f"provider is {provider!r}, not "
                                       f"{self.expected_provider!r}")
            (entry / "inblob").write_bytes(inblob)
            generation = _read_int(entry / "generation")
            outblob = (entry / "outblob").read_bytes()
            aux_path = entry / "auxblob"
            auxblob = aux_path.read_bytes() if aux_path.exists() else None
            if _read_int(entry / "generation") != generation:
                raise AttestationError("the configfs-tsm report changed while it was read "
                                       "(another writer)", hint="retry the request")
        except OSError as exc:
            raise AttestationError(f"configfs-tsm request failed ({type(exc).__name__})",
                                   hint="check the kernel log (dmesg) of the guest") from None
        if not outblob:
            raise AttestationError("configfs-tsm returned an empty report")
        return TsmReport(provider=provider, outblob=outblob, auxblob=auxblob or None)


def _read_int(path: Path) -> int:
    text = path.read_text().strip()
    if not text.isdigit():
        raise AttestationError(f"{path}: unexpected content in configfs-tsm")
    return int(text)
