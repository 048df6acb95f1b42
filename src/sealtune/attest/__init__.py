"""Remote attestation (RFC 9334 roles): the server attests, the client verifies."""
