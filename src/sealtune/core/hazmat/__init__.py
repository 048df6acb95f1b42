"""Raw cryptographic primitives: thin wrappers over ``cryptography``.

The folder name is the warning, as in ``cryptography.hazmat``: these
functions do exactly what they say and nothing more (no key commitment, no
format framing, no key management). Only ``sealtune.core`` and
``sealtune.keys`` may import them; stages use the safe APIs built on top
(``sealtune.core.envelope``, ``sealtune.keys.files``).

Failures are opaque, as in ``cryptography``: authentication failures raise
``cryptography.exceptions.InvalidTag`` without saying where or why.
"""
