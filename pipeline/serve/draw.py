"""The random draw and the keyed hash: which declarations fall in the random stratum, and the
tie-break value that settles ties on a cut-off; the secret key they are keyed with.

Reproducible by any system from the declaration id alone:

- key bytes ``k`` = the first 16 characters (ASCII) of the hex SHA-256 of the UTF-8 ``key``;
- ``h0`` = SipHash-2-4 with key ``k`` of the UTF-8 bytes of the declaration id (64-bit result,
  key read as two little-endian 64-bit words, as in the reference implementation);
- ``h`` = the splitmix64 finaliser of ``h0`` (all arithmetic modulo 2^64):
  ``h ^= h >> 30; h *= 0xBF58476D1CE4E5B9; h ^= h >> 27; h *= 0x94D049BB133111EB; h ^= h >> 31``;
- selected when ``h < floor(rate x 2^64)`` (every declaration when rate is 1);
- the tie-break value is ``(h >> 11) / 2^53`` with ``h`` computed with the key
  ``<random key>/tie-break``.

This is exactly `pandas.util.hash_array(ids, hash_key=k, categorize=False)` (vectorised in C);
tests/serve/test_serve_thresholds.py checks it against an independent pure-Python SipHash.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import ServeConfig
from pipeline.serve.selectivity import ThresholdsError

logger = logging.getLogger(__name__)

RANDOM_ALGORITHM = "siphash-2-4+splitmix64 (pandas.util.hash_array), key = sha256(key)[:16]"
TIEBREAK_SUFFIX = "/tie-break"
KEY_ENV = "TARGETING_RANDOM_KEY"
DEVELOPMENT_KEY = "customs-targeting"  # public: fine for research, never for a deployment
FINGERPRINT_PREFIX = "customs-targeting random key fingerprint:"


@functools.cache
def _warn_development_key(env: str) -> None:
    logger.warning(
        "the random draw uses the public development key: set %s (or %s_FILE, or "
        "serve.random_key_file) to a secret key before deploying",
        env,
        env,
    )


def random_key(env: str = KEY_ENV, file: Path | None = None) -> str:
    """The random draw's secret key: the environment variable `env`, else the file named by
    `<env>_FILE` or `file`, else the public development key (with a warning). Never written."""
    value = os.environ.get(env)
    if value:
        return value
    named = os.environ.get(f"{env}_FILE")
    source = Path(named) if named else file
    if source is not None:
        try:
            text = Path(source).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ThresholdsError(
                f"cannot read the random-draw key from {source}: {exc.strerror or exc}"
            ) from None
        if not text:
            raise ThresholdsError(f"the random-draw key file {source} is empty")
        return text
    _warn_development_key(env)
    return DEVELOPMENT_KEY


def serve_random_key(serve: ServeConfig) -> str:
    """The key a serving config points at (`serve.random_key_env`, `serve.random_key_file`)."""
    return random_key(serve.random_key_env, serve.random_key_file)


def key_fingerprint(key: str) -> str:
    """What the export records of the key: a SHA-256 of a prefixed key (never the hash whose
    first 16 characters key the draw, which would give the draw away)."""
    return hashlib.sha256((FINGERPRINT_PREFIX + key).encode("utf-8")).hexdigest()


def random_key_bytes(key: str) -> str:
    """The 16-character hash key derived from the configured key (see the module docstring)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def random_hash(declaration_ids: pd.Series | np.ndarray, key: str) -> np.ndarray:
    """The keyed 64-bit hash of each declaration id (uint64), as documented above."""
    ids = pd.Series(declaration_ids, copy=False)
    if ids.dtype != object or ids.isna().any():  # text without gaps goes to the hash as it is
        ids = ids.astype("string").fillna("")
    values = ids.to_numpy(dtype=object)
    return np.asarray(
        pd.util.hash_array(values, hash_key=random_key_bytes(key), categorize=False),
        dtype=np.uint64,
    )


def tiebreak_values(declaration_ids: pd.Series | np.ndarray, key: str) -> np.ndarray:
    """The last tie-break of the ranking: a reproducible value in [0, 1) per declaration id."""
    hashed = random_hash(declaration_ids, key + TIEBREAK_SUFFIX) >> np.uint64(11)
    return hashed.astype(np.float64) * 2.0**-53


def random_draw(declaration_ids: pd.Series | np.ndarray, key: str, rate: float) -> np.ndarray:
    """True where the declaration falls in the random stratum (probability `rate`)."""
    if rate >= 1.0:
        return np.ones(len(declaration_ids), dtype=bool)
    # rate x 2^64 is exact in binary floating point; int() floors it.
    limit = np.uint64(int(rate * 2.0**64))
    return random_hash(declaration_ids, key) < limit
