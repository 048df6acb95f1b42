"""Key management: the Keyring port, its backends, and sealed files."""
