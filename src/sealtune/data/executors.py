"""Where the data stage's per-record work runs: in this process (``local``) or on Ray (``ray``).

The data stage has two kinds of work. Per-record work (PII detection, the
costliest step) depends on one record's text only; dataset-wide work
(screening for duplicates, conflicts and triggers, the dataset-wide
redaction dictionary, record ids, sealing) depends on every record and on
their order. The ``ray`` executor distributes only the first kind: before
the stage's passes it reads the input once, sends each distinct text
(messages, kept text fields, record ids) to Ray Data in batches, and gets
back the entities the same :class:`~sealtune.data.pii.Analyzer` finds (the
policy is shipped to the workers and each builds its own analyzer). The
stage then runs exactly as with ``local``, with an analyzer that answers
from those results (:class:`PrecomputedAnalyzer`, keyed by a hash of the
text; a text it was not given is analysed here). Screening, the dictionary,
redaction and sealing stay in this process and in input order, so the
sealed records, manifest counts, BOM and findings are the same as the
local executor's (tests/integration/test_ray_executor.py; bench/ingest.py
at 100k records).

Cluster: ``RAY_ADDRESS`` joins an existing cluster; without it a private
local Ray is started for the ingest and stopped after it, told to bind
127.0.0.1 (dashboard off, its session directory 0700, object spilling off
so that record text in the object store never reaches a disk). Ray binds
every interface unless told otherwise, and field notes say some of its
servers do even when told: the integration test inspects every listening
socket of the Ray processes and fails on anything beyond loopback; where
it fails, run the ingest in a network namespace that has only loopback
or firewall Ray's ports. In the data sandbox (the default) the private Ray
runs inside the sandbox, whose network namespace has only loopback
(:func:`sealtune.data.sandboxed.check_sandboxed_executor`); a cluster is
reached only with the sandbox off.

What this protects against: nothing new; it is a speed option. What it
exposes: Ray workers receive record text in clear (the texts, never keys,
sealed files or the dataset secret), and it crosses the cluster's network
and object stores. A cluster must be trusted as much as this host: run it
on a private network with Ray's TLS settings (``RAY_USE_TLS=1`` and its
certificates) and token authentication, and keep spilling off or on
encrypted volumes. The preprocessing sandbox confines this process and a
private Ray started inside it, not remote Ray workers (see docs/threat-model.md).
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sealtune.data.detections import kept_texts
from sealtune.data.formats import Opener, read_records
from sealtune.data.pii import Analyzer, Entity
from sealtune.errors import SealtuneError, UsageError
from sealtune.keys.sealing import SealedSource, is_sealed

if TYPE_CHECKING:
    from sealtune.data.policy import Policy
    from sealtune.keys.service import KeyService

__all__ = ["CHUNK", "EXECUTORS", "ChunkRunner", "PrecomputedAnalyzer", "check_executor", "chunks",
           "detect_in_batches", "executor_name", "in_process", "precompute", "ray_session",
           "text_key"]

EXECUTORS = ("local", "ray")
#: Distinct texts per Ray Data dataset (bounds the driver's memory per round).
CHUNK = 50_000
_BATCH = 512
_WORKER: dict[str, Analyzer] = {}


def text_key(text: str) -> bytes:
    """The 16-byte hash by which precomputed entities are looked up."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class PrecomputedAnalyzer:
    """An :class:`Analyzer` that answers from entities found elsewhere, by text hash.

    Args:
        inner: the local analyzer, for texts that were not precomputed.
        found: text hash -> entities.
    """

    def __init__(self, inner: Analyzer, found: dict[bytes, list[Entity]]) -> None:
        self.inner = inner
        self.found = found
        self.misses = 0

    def analyze(self, text: str) -> list[Entity]:
        """The entities of ``text``: precomputed, or found here."""
        hit = self.found.get(text_key(text))
        if hit is None:
            self.misses += 1
            return self.inner.analyze(text)
        return list(hit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _texts(path: Path, *, format: str | None, text_field: str | None,
           keep_fields: frozenset[str], keys: KeyService | None,
           opener: Opener | None = None) -> Iterator[str]:
    if opener is None and keys is not None and is_sealed(path):
        opener = SealedSource(path, keys=keys).open
    # Malformed lines are the stage's business (its own passes report or skip them).
    with read_records(path, format=format, text_field=text_field, on_error="skip",
                      opener=opener) as stream:
        for record in stream:
            yield record.id
            yield from (m.content for m in record.messages)
            yield from (record.extra[k] for k in kept_texts(record, keep_fields))


def _detect_batch(policy: Policy) -> Any:
    digest = policy.digest()

    def run(batch: dict[str, Any]) -> dict[str, Any]:
        analyzer = _WORKER.get(digest)
        if analyzer is None:
            analyzer = _WORKER[digest] = policy.analyzer()
        found = [[(e.type, e.start, e.end, e.score, e.recognizer)
                  for e in analyzer.analyze(str(t))] for t in batch["text"]]
        return {"key": list(batch["key"]), "found": [repr(f) for f in found]}

    return run


def chunks(texts: Iterable[str], size: int) -> Iterator[list[tuple[bytes, str]]]:
    seen: set[bytes] = set()
    chunk: list[tuple[bytes, str]] = []
    for text in texts:
        key = text_key(text)
        if key in seen:
            continue
        seen.add(key)
        chunk.append((key, text))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: ``run(chunk of (text hash, text), policy)`` -> ``(text hash, encoded entities)`` pairs.
ChunkRunner = Callable[[list[tuple[bytes, str]], "Policy"], Iterable[tuple[bytes, str]]]


def _on_ray(part: list[tuple[bytes, str]], policy: Policy) -> Iterator[tuple[bytes, str]]:
    import ray

    with _ray_quiet():
        ds = ray.data.from_items([{"key": k, "text": t} for k, t in part])
        out = ds.map_batches(_detect_batch(policy), batch_size=_BATCH, batch_format="numpy")
        rows = [(bytes(row["key"]), str(row["found"])) for row in out.iter_rows()]
    yield from rows


@contextmanager
def _ray_quiet() -> Iterator[None]:
    """Ray Data 2.60 warns about its own deprecated fields on every ``DataContext`` copy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                module=r"ray\.data\.context")
        yield


def in_process(part: list[tuple[bytes, str]], policy: Policy) -> Iterator[tuple[bytes, str]]:
    """The ``ray`` executor's batches run here: same encoding, no cluster (for tests)."""
    run = _detect_batch(policy)
    for i in range(0, len(part), _BATCH):
        batch = part[i:i + _BATCH]
        out = run({"key": [k for k, _ in batch], "text": [t for _, t in batch]})
        yield from zip(out["key"], out["found"], strict=True)


def detect_in_batches(path: Path, policy: Policy, *, run: ChunkRunner, format: str | None = None,
                      text_field: str | None = None, keys: KeyService | None = None,
                      opener: Opener | None = None, chunk: int = CHUNK) -> PrecomputedAnalyzer:
    """Detect PII in every distinct text of ``path`` through ``run``; return the replaying analyzer.

    For Ray, call inside :func:`ray_session` with ``run=_on_ray`` (what :func:`precompute` does).
    A sealed ``path`` is opened with ``opener`` (the data sandbox's, from the data key it
    was handed) or else with ``keys``.
    """
    texts = _texts(path, format=format, text_field=text_field,
                   keep_fields=frozenset(policy.keep_fields), keys=keys, opener=opener)
    found: dict[bytes, list[Entity]] = {}
    for part in chunks(texts, chunk):
        for key, encoded in run(part, policy):
            found[bytes(key)] = [Entity(*e) for e in ast.literal_eval(encoded)]
    return PrecomputedAnalyzer(policy.analyzer(), found)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray Data",
                         hint="pip install 'sealtune[ray]'") from None
    return ray


@contextmanager
def ray_session(*, address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Join the Ray cluster at ``address`` / ``$RAY_ADDRESS``, or run a private local one.

    The local one is told to bind 127.0.0.1 (``_node_ip_address``), has no
    dashboard, keeps its session files in a fresh 0700 directory (removed
    afterwards) and never spills objects to disk; it is shut down on exit.
    Whether every Ray process honours the address is what
    ``test_local_ray_listens_on_loopback_only`` checks (see the module docstring).

    Raises:
        SealtuneError: Ray did not start, or the cluster did not answer.
    """
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    tmp = None if address is not None else tempfile.mkdtemp(prefix="sealtune-ray-")
    try:
        _init(ray, address, tmp, num_cpus)
    except Exception as exc:  # Ray raises bare Exception on a start-up timeout
        ray.shutdown()  # stops whatever part of the local Ray did start
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise SealtuneError(f"--executor ray: {where} did not start or answer "
                            f"({type(exc).__name__})",
                            hint="check the cluster (or the host's load: a local Ray needs its "
                                 "agents up within 30 s), or use --executor local") from None
    if address is None:
        exposed = listeners_beyond_loopback(os.getpid())
        if exposed:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)  # type: ignore[arg-type]
            raise SealtuneError(
                "--executor ray: a private local Ray would listen beyond loopback "
                f"({len(exposed)} socket(s), e.g. port {exposed[0][1]}): Ray binds every "
                "interface whatever it is told, and its workers receive record text",
                hint="keep the data sandbox on (Ray then runs inside it), run the ingest in "
                     "a network namespace with only loopback (e.g. "
                     "'bwrap --dev-bind / / --unshare-net sealtune data ingest ...'), or set "
                     "RAY_ADDRESS to a cluster you secure (Ray TLS), or use --executor local")
    try:
        with _ray_quiet():
            ray.data.DataContext.get_current().enable_progress_bars = False
        yield
    finally:
        ray.shutdown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


_LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 in /proc


def listeners_beyond_loopback(root: int) -> list[tuple[str, int]]:
    """Listening TCP sockets of ``root`` and its descendants reachable beyond loopback.

    A socket bound to a non-loopback or wildcard address counts, unless this
    network namespace has no interface but ``lo`` (inside ``--unshare-net``
    a wildcard bind is reachable through loopback only). Read from ``/proc``.

    Returns:
        ``(address as /proc shows it, port)`` pairs; empty when none.
    """
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]  # this namespace's
    if {line.split(":", 1)[0].strip() for line in lines} <= {"lo"}:
        return []
    inodes = _socket_inodes(_descendants(root))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                addr, port = f[1].split(":")
                if addr not in _LOOPBACK:
                    found.append((addr, int(port, 16)))
    return found


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo += children.get(pid, [])
    return out


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def _init(ray: Any, address: str | None, tmp: str | None, num_cpus: int | None) -> None:
    if address is not None:
        ray.init(address=address, configure_logging=False, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1", _temp_dir=tmp,
                 configure_logging=False, log_to_driver=False,
                 object_store_memory=_object_store_bytes(tmp),
                 _system_config={"automatic_object_spilling_enabled": False,
                                 # the agents start slowly on a loaded host (the default,
                                 # 30 s, fails a 2-core CI machine at load 10)
                                 "agent_register_timeout_ms": 180_000})


#: Ray refuses an object store under 75 MiB.
_RAY_MIN_STORE = 80 << 20


def _object_store_bytes(tmp: str | None) -> int:
    """A private Ray's object store: 40 % of the smaller of ``/dev/shm`` and its temp dir.

    Ray sizes it at 30 % of the host's memory and, when ``/dev/shm`` is smaller
    than that (as the data sandbox's tmpfs is), places it in the temp directory
    without capping it: a file larger than that tmpfs would fault (SIGBUS) once
    filled. Streaming detection keeps only a few batches there.
    """
    shm = "/dev/shm"  # noqa: S108 (measured, not written to)
    sizes = [shutil.disk_usage(d).total for d in (shm, tmp or tempfile.gettempdir())
             if os.path.isdir(d)]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(_RAY_MIN_STORE, min([int(0.3 * memory), *(int(0.4 * x) for x in sizes)]))


def check_executor(name: str) -> str:
    """``name`` if it is a known executor.

    Raises:
        UsageError: it is not.
    """
    if name not in EXECUTORS:
        raise UsageError(f"executor {name!r} is not known", hint=f"use one of {EXECUTORS}")
    return name


def precompute(executor: str | ChunkRunner, path: Path, policy: Policy, *,
               format: str | None, text_field: str | None,
               keys: KeyService | None, opener: Opener | None = None) -> Analyzer | None:
    """``local``: None; ``ray``: the analyzer answering from detection run on Ray Data.

    A :data:`ChunkRunner` runs the batches itself (``in_process``: the ``ray``
    path without a cluster, for tests). ``opener`` opens a sealed input (inside
    the data sandbox, which holds its data key but no key service).

    Raises:
        UsageError: an unknown executor, or Ray is not installed.
    """
    if not callable(executor) and check_executor(executor) == "local":
        return None
    if keys is not None and is_sealed(path):
        keys.audit("data.read", str(path), details={"part": "sealed input",
                                                     "executor": executor_name(executor)})
    if callable(executor):
        found = detect_in_batches(path, policy, run=executor, format=format,
                                  text_field=text_field, keys=keys, opener=opener)
    else:
        with ray_session():
            found = detect_in_batches(path, policy, run=_on_ray, format=format,
                                      text_field=text_field, keys=keys, opener=opener)
    return cast("Analyzer", found)  # duck-typed: analyze() and the rest delegated


def executor_name(executor: str | ChunkRunner) -> str:
    """The name recorded in the audit log."""
    return executor if isinstance(executor, str) else getattr(executor, "__name__", "custom")
