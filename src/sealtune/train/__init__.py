"""Sandboxed training.

``sandbox`` runs training code in a bubblewrap sandbox: OS isolation (Linux
namespaces, read-only mounts, no network, a private tmpfs, resource limits),
not a TEE — root on the host can still read its memory. Keys reach the sandbox
over an inherited pipe only; progress and milestones come back over a
structured event channel that carries numbers and short tokens, never sample
text.
"""
