"""Every error mmembed raises.

Catch :class:`MMEmbedError` to handle anything from this library. Each error also inherits the
built-in exception a caller would already expect, so ``except ValueError`` keeps working::

    MMEmbedError
    ├── ConfigurationError (ValueError)       bad arguments or settings
    ├── MissingDependencyError (ImportError)  an optional extra is not installed
    ├── UnsupportedMediaError (ValueError)    bytes of a type no embedder or chunker takes
    ├── InputLimitError (ValueError)          an item is over the model's limits: chunk it first
    ├── ChunkingError                         a file could not be decoded or cut
    ├── BudgetExceededError                   a run's estimated cost is over its max_cost
    ├── EmbeddingError                        the embedding backend failed
    │   ├── RateLimitError                    quota or rate limit still hit after retries
    │   ├── AuthenticationError               missing, wrong or unauthorised API key
    │   └── ProviderError                     any other error from the provider
    └── StoreError                            a vector store failed
        ├── CorruptStoreError                 files on disk are damaged or not ours
        ├── DiskError                         the disk refused a write: full, read-only
        ├── DimensionMismatchError (ValueError)  vectors of the wrong width
        ├── IncompatibleIndexError            an index opened with a different embedder
        └── IndexLockedError                  another process is writing to the same index

Every message says what is wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BudgetExceededError",
    "ChunkingError",
    "ConfigurationError",
    "CorruptStoreError",
    "DimensionMismatchError",
    "DiskError",
    "EmbeddingError",
    "IncompatibleIndexError",
    "IndexLockedError",
    "InputLimitError",
    "MMEmbedError",
    "MissingDependencyError",
    "ProviderError",
    "RateLimitError",
    "StoreError",
    "UnsupportedMediaError",
]


class MMEmbedError(Exception):
    """Root of every error raised by mmembed."""


class ConfigurationError(MMEmbedError, ValueError):
    """An argument or setting is invalid (a dimension out of range, an unknown option, ...)."""


class MissingDependencyError(MMEmbedError, ImportError):
    """An optional dependency is missing; the message carries the exact install command."""


class UnsupportedMediaError(MMEmbedError, ValueError):
    """The bytes are of a type mmembed cannot embed or chunk; the message names what was found."""


class InputLimitError(MMEmbedError, ValueError):
    """An item exceeds the model's limits; the message names the item, the limit and the fix.

    Attributes:
        index: position of the offending item in the input, when known.
        limit: short name of the limit that was exceeded (``"images_per_item"``, ...).
    """

    def __init__(self, message: str, *, index: int | None = None, limit: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.limit = limit


class ChunkingError(MMEmbedError):
    """A file could not be decoded or cut into chunks (corrupt, truncated, hostile, too slow)."""


class BudgetExceededError(MMEmbedError):
    """A run was refused before anything was sent: its estimated cost is over ``max_cost``.

    Attributes:
        estimate_usd: the dry run's estimate of the run, in US dollars.
        max_cost_usd: the limit it was over.
    """

    def __init__(self, message: str, *, estimate_usd: float, max_cost_usd: float) -> None:
        super().__init__(message)
        self.estimate_usd = estimate_usd
        self.max_cost_usd = max_cost_usd


class EmbeddingError(MMEmbedError):
    """The embedding backend failed.

    Attributes:
        status_code: the HTTP status, when there was one.
        retryable: whether trying again later may succeed.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable


class RateLimitError(EmbeddingError):
    """The provider kept answering 429 (rate limit or quota) after all retries.

    Attributes:
        retry_after: the seconds the provider last asked to wait before trying again (its
            ``RetryInfo``), or ``None`` when it did not say.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)
        self.retry_after = retry_after


class AuthenticationError(EmbeddingError):
    """The API key is missing, invalid, or lacks permission for the model."""


class ProviderError(EmbeddingError):
    """Any other provider failure: a bad request, a server error, a timeout, a malformed reply."""


class StoreError(MMEmbedError):
    """A vector store operation failed."""


class CorruptStoreError(StoreError):
    """Store files are damaged, incomplete, tampered with, or were not written by mmembed."""


class DiskError(StoreError):
    """The disk refused a write: it is full, read-only, or the files are not writable.

    Nothing committed is lost: free space (or make the folder writable) and run again.
    """


class DimensionMismatchError(StoreError, ValueError):
    """Vectors do not have the width the store or index was created with."""


class IncompatibleIndexError(StoreError):
    """An index was opened with an embedder or settings other than the ones it was built with."""


class IndexLockedError(StoreError):
    """Another process is writing to the same index right now; wait for it or stop it."""
