"""The data stage: parse, detect PII and secrets, redact, screen, record provenance.

Subpackages: :mod:`sealtune.data.pii` (PII and secret detection). The stage
never logs record text; errors name the file, line and field only.
"""
