"""The embedder contract now ships as :mod:`mmembed.testing.contracts`; kept for the test
modules that import it from here."""

from mmembed.testing.contracts.embedder import TEXTS, EmbedderContract

__all__ = ["TEXTS", "EmbedderContract"]
