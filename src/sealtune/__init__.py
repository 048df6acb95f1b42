"""sealtune: secure LLM fine-tuning from sealed data to an attested deployment."""

__version__ = "0.1.0"
