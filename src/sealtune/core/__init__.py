"""The pure core of sealtune: formats and rules with no I/O of their own.

Modules here take bytes and binary streams, never paths, clocks or sockets,
so they are easy to test exhaustively and to reuse in the light client.
``core.hazmat`` holds the thin wrappers over raw cryptographic primitives;
only ``core`` and ``keys`` may import it.
"""
