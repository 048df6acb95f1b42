"""Generation engines behind one port (:class:`~sealtune.serve.engines.base.Engine`).

``echo`` (protocol benchmarks and tests) and ``transformers`` (CPU, or one
GPU) are registered here by name in :data:`ENGINES`; the transformers
engine imports torch only when built. A vLLM engine would register as
``vllm`` with the same interface.

What this protects against and what it does not: see each engine; engines
see plaintext (they run inside the server process) and must never log or
persist it.
"""

from sealtune.serve.engines import echo, transformers
from sealtune.serve.engines.base import (
    ENGINES,
    Completion,
    Engine,
    EngineFailed,
    Message,
    RequestTooLarge,
    Sampling,
    TokenStream,
    make_engine,
    register_engine,
)

__all__ = [
    "ENGINES", "Completion", "Engine", "EngineFailed", "Message", "RequestTooLarge", "Sampling",
    "TokenStream", "echo", "make_engine", "register_engine", "transformers",
]
