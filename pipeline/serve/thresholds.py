"""Capacity -> channel cut-offs; the selectivity export (`selectivity.json`) and its validation.

Pure functions of DataFrames, except `Thresholds.save` / `Thresholds.load` (the export file).

How a declaration gets its channel (the same code runs at export time on the reference window
and at serving time on new declarations, `assign_channels`):

1. **Random draw** (compliance measurement): selected when the keyed hash of its declaration id
   falls below ``random.rate`` (`random_draw`, algorithm below). Channel ``random.channel``
   (red), selection reason ``random``, selection probability = the rate. The draw is checked
   first so that the random stratum is a uniform sample of every declaration, rules included.
2. **Mandatory rules** (risk criteria): a declaration whose column matches one of the rule's
   values (or starts with one of its prefixes) goes red, reason = the rule's name.
3. **The model**: the channels are taken in order of severity (red, then yellow...); a
   declaration goes to the first channel whose cut-off it reaches, else to green.

Cut-offs. Each cut-off is a triple ``(score, margin, tiebreak)``, compared lexicographically: a
declaration reaches it when its score is higher; or equal with a higher booster margin; or equal
in both with a tie-break value at least as high. The margin orders declarations exactly as the
calibrated probability does (calibration is monotone) and breaks the ties that isotonic
calibration creates on its plateaus; the tie-break value, ``(h >> 11) / 2^53`` with ``h`` the
keyed hash below computed with the key ``<random key>/tie-break``, settles what is left (a model
with few distinct scores) reproducibly, so shares are met to the declaration. ``null``: nobody.
Cut-offs are set on a reference window so that *all* red controls (random + rules + model) make
the red target share, and red + yellow make red + yellow targets.

AEO policy. Authorised Economic Operators get their own, stricter cut-offs: on the declarations
not taken by the random draw or a rule, the model selects AEO declarations at ``factor`` times the
rate of the others, and the two rates are solved together so that the overall share stays at the
target: ``q_other = K / (factor x n_aeo + n_other)``, ``q_aeo = factor x q_other``, where ``K`` is
the number of model selections the channel needs.

Per office. With ``per_office``, each office seen in the reference window gets its own cut-offs:
its red rate is ``office_capacity[office] / (its declarations per day)`` (capped at 1) when a
capacity is given, else the global red rate; other channels keep their global rates. An office
absent from the export (a new office) uses the global cut-offs.

The random draw, reproducible by any system from the declaration id alone:

- key bytes ``k`` = the first 16 characters (ASCII) of the hex SHA-256 of the UTF-8 ``key``;
- ``h0`` = SipHash-2-4 with key ``k`` of the UTF-8 bytes of the declaration id (64-bit result,
  key read as two little-endian 64-bit words, as in the reference implementation);
- ``h`` = the splitmix64 finaliser of ``h0`` (all arithmetic modulo 2^64):
  ``h ^= h >> 30; h *= 0xBF58476D1CE4E5B9; h ^= h >> 27; h *= 0x94D049BB133111EB; h ^= h >> 31``;
- selected when ``h < floor(rate x 2^64)`` (every declaration when rate is 1).

This is exactly `pandas.util.hash_array(ids, hash_key=k, categorize=False)` (vectorised in C);
tests/test_serve_thresholds.py checks it against an independent pure-Python SipHash.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from pipeline.config import RuleConfig, ServeConfig
from pipeline.ingest.columns import RANDOM
from pipeline.serve.model import shift_log_odds
from pipeline.timeaxis import Window, data_end

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"
SCHEMA_FILE = "selectivity.schema.json"
DEFAULT_CHANNEL = "green"
RANDOM_REASON = RANDOM  # a declaration the random draw selects serves with this reason
MODEL_REASON = "model"
RANDOM_ALGORITHM = "siphash-2-4+splitmix64 (pandas.util.hash_array), key = sha256(key)[:16]"

Cutoff = dict[str, float | None]  # {"score", "margin", "tiebreak"}; None: nobody reaches it
CUTOFF_PARTS = ("score", "margin", "tiebreak")
TIEBREAK_SUFFIX = "/tie-break"
DIGEST_KEY = "content_sha256"
KEY_ENV = "TARGETING_RANDOM_KEY"
DEVELOPMENT_KEY = "customs-targeting"  # public: fine for research, never for a deployment
FINGERPRINT_PREFIX = "customs-targeting random key fingerprint:"


class ThresholdsError(ValueError):
    """A selectivity file that cannot be used: invalid, inconsistent, or made for another model."""


# --- the random draw -------------------------------------------------------------------------


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


# --- rules -----------------------------------------------------------------------------------


def rule_matches(declarations: pd.DataFrame, rules: list[RuleConfig]) -> pd.Series:
    """The name of the first rule each declaration matches (string dtype, <NA> when none)."""
    matched = pd.Series(pd.NA, index=declarations.index, dtype="string")
    for rule in reversed(rules):  # the first rule in the list wins: assign it last
        if rule.column not in declarations.columns:
            raise ThresholdsError(
                f"rule {rule.name!r}: column {rule.column!r} is not in the declarations "
                f"(columns: {', '.join(map(str, declarations.columns))})"
            )
        text = declarations[rule.column].astype("string")
        hit = text.isin(rule.values).fillna(False)
        if rule.prefix:
            hit |= text.str.startswith(tuple(rule.prefix)).fillna(False)
        matched = matched.mask(hit.to_numpy(dtype=bool), rule.name)
    return matched


# --- cut-offs --------------------------------------------------------------------------------


def _top_k_cutoff(rank: np.ndarray, k: int) -> Cutoff:
    """The ranking key of the k-th highest declaration: exactly k reach it.

    `rank`: (n, 3) array of score, margin and tie-break value.
    """
    if k <= 0 or len(rank) == 0:
        return dict.fromkeys(CUTOFF_PARTS)
    order = np.lexsort((rank[:, 2], rank[:, 1], rank[:, 0]))  # ascending, score first
    row = order[max(len(rank) - k, 0)]
    return {part: float(rank[row, i]) for i, part in enumerate(CUTOFF_PARTS)}


def _reaches(rank: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """True where the ranking key >= the cut-off, lexicographically; NaN cut-offs: nobody.

    `rank` and `cut`: (n, 3) arrays of score, margin and tie-break value.
    """
    score, margin, tie = rank[:, 0], rank[:, 1], rank[:, 2]
    cs, cm, ct = cut[:, 0], cut[:, 1], cut[:, 2]
    return (score > cs) | ((score == cs) & ((margin > cm) | ((margin == cm) & (tie >= ct))))


def group_cutoffs(
    rank: np.ndarray,
    forced: np.ndarray,
    aeo: np.ndarray,
    rates: dict[str, float],
    aeo_factor: float,
) -> dict[str, dict[str, Cutoff]]:
    """Cut-offs of one group of declarations (all, or one office) meeting `rates`.

    `forced` rows (random draw, rules) are red already and count towards the red share;
    `rates` are in order of severity. Returns {"cutoffs": ..., "aeo_cutoffs": ...} by channel.
    """
    n = len(rank)
    eligible = ~forced
    is_aeo = eligible & aeo
    other = eligible & ~aeo
    n_aeo, n_other = int(is_aeo.sum()), int(other.sum())
    n_forced = int(forced.sum())
    cutoffs: dict[str, Cutoff] = {}
    aeo_cutoffs: dict[str, Cutoff] = {}
    cumulative = 0.0
    for channel, rate in rates.items():
        cumulative += rate
        wanted = min(max(round(cumulative * n) - n_forced, 0), n_aeo + n_other)
        denominator = aeo_factor * n_aeo + n_other
        k_aeo = min(n_aeo, round(aeo_factor * n_aeo * wanted / denominator)) if denominator else 0
        k_other = min(n_other, wanted - k_aeo)
        k_aeo = min(n_aeo, wanted - k_other)  # other declarations exhausted: AEO take the rest
        cutoffs[channel] = _top_k_cutoff(rank[other], k_other)
        aeo_cutoffs[channel] = _top_k_cutoff(rank[is_aeo], k_aeo)
    return {"cutoffs": cutoffs, "aeo_cutoffs": aeo_cutoffs}


def office_rates(
    office: pd.Series, days: float, serve: ServeConfig
) -> dict[str, dict[str, float | None]]:
    """Per-office rates: red from the office's daily capacity and its daily flow."""
    channels = list(serve.channels)
    flow = office.astype("string").value_counts(dropna=True) / max(days, 1e-9)
    out: dict[str, dict[str, float | None]] = {}
    for name, per_day in flow.items():
        rates: dict[str, float] = dict(serve.channels)
        capacity = serve.office_capacity.get(str(name))
        if capacity is not None and channels:
            rates[channels[0]] = min(1.0, capacity / float(per_day))
        total = sum(rates.values())
        if total > 1.0:  # capacity beyond the flow: the lighter channels shrink
            rates = _cap_rates(rates)
        out[str(name)] = {
            "daily_flow": float(per_day),
            "capacity": capacity,
            **{f"rate.{c}": r for c, r in rates.items()},
        }
    return out


def _cap_rates(rates: dict[str, float]) -> dict[str, float]:
    """Rates in order of severity, each cut so that their sum stays within 1."""
    left = 1.0
    capped: dict[str, float] = {}
    for channel, rate in rates.items():
        capped[channel] = min(rate, left)
        left -= capped[channel]
    return capped


@dataclass(frozen=True)
class Thresholds:
    """The selectivity export: everything a selectivity system needs to reproduce the channels."""

    document: dict[str, Any]
    random_key: str | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """The random draw's key: the one given, else from the environment variable the export
        names; refused when it does not match the export's fingerprint."""
        policy = self.document["random"]
        if "key_sha256" not in policy:  # an in-memory policy of an older layout
            return str(policy.get("key", self.random_key or DEVELOPMENT_KEY))
        key = self.random_key
        if key is None:
            key = random_key(str(policy.get("key_env") or KEY_ENV))
        if key_fingerprint(key) != policy["key_sha256"]:
            env = policy.get("key_env") or KEY_ENV
            raise ThresholdsError(
                "the random-draw key does not match the export's fingerprint (random/key_sha256 "
                f"{str(policy['key_sha256'])[:12]}...): set {env} (or {env}_FILE) to the key the "
                "export was made with"
            )
        return key

    # --- accessors ----------------------------------------------------------------------------
    @property
    def channels(self) -> dict[str, float]:
        """Channel -> target share, in order of severity."""
        return {c["name"]: float(c["rate"]) for c in self.document["channels"]}

    @property
    def booster_sha256(self) -> str:
        """Fingerprint of the booster the cut-offs were set for."""
        return str(self.document["model"]["booster_sha256"])

    @property
    def model_uri(self) -> str | None:
        """Where the model lives (an MLflow URI or a local TargetingModel folder)."""
        uri = self.document["model"].get("uri")
        return str(uri) if uri else None

    @property
    def rank_by(self) -> str:
        """`probability`, `expected_revenue` or `blend`: what the `score` column holds."""
        return str(self.document["rank_by"])

    @property
    def revenue_weight(self) -> float:
        """The blend's weight on E[revenue | hit] (`serve.revenue_weight`; 1 when absent)."""
        return float(self.document.get("revenue_weight", 1.0))

    @property
    def random_rate(self) -> float:
        """Probability of the random draw."""
        return float(self.document["random"]["rate"])

    @property
    def rules(self) -> list[RuleConfig]:
        """Mandatory rules, in priority order."""
        return [RuleConfig(**rule) for rule in self.document["rules"]]

    @property
    def reasons(self) -> int:
        """Reason codes given to red and yellow rows."""
        return int(self.document["serving"]["reasons"])

    @property
    def reason_method(self) -> str:
        """`treeshap_red` (exact for the most severe channel, approximate for the others),
        `treeshap` (exact, pred_contribs) or `approximate` (approx_contribs)."""
        return str(self.document["serving"].get("reason_method", "treeshap"))

    @property
    def invalid_channel(self) -> str:
        """Channel of declarations that fail validation."""
        return str(self.document["serving"]["invalid_channel"])

    @property
    def default_channel(self) -> str:
        """Channel of declarations that reach no cut-off."""
        return str(self.document["serving"]["default_channel"])

    def check_model(self, booster_sha256: str) -> None:
        """Refuse a model other than the one the cut-offs were set for."""
        if booster_sha256 != self.booster_sha256:
            model = self.document["model"]
            raise ThresholdsError(
                "the selectivity file was made for another model: it names "
                f"{model.get('name')} version {model.get('version')} ({model.get('uri')}) with "
                f"booster sha256 {self.booster_sha256[:12]}..., the loaded booster has "
                f"{booster_sha256[:12]}...; export the thresholds again for this model"
            )

    # --- file ---------------------------------------------------------------------------------
    def to_json(self) -> str:
        """The export as JSON text."""
        return json.dumps(self.document, indent=2, allow_nan=False) + "\n"

    def save(self, path: Path) -> Path:
        """Validate, bind the content (`content_sha256`, set in the document), then write
        atomically (temporary file in the same folder, mode 0644, then rename)."""
        validate_document(self.document)
        self.document[DIGEST_KEY] = content_digest(self.document)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide the file from the serving user
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(self.to_json())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_document(
        cls, document: dict[str, Any], booster_sha256: str | None = None
    ) -> Thresholds:
        """Validate a parsed export (schema, ordering, rates; model hash when given)."""
        validate_document(document)
        thresholds = cls(document)
        if booster_sha256 is not None:
            thresholds.check_model(booster_sha256)
        return thresholds

    @classmethod
    def load(cls, path: Path, booster_sha256: str | None = None) -> Thresholds:
        """Read and validate a selectivity file; refuse it if made for another booster."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"selectivity file not found: {path}")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: is a folder, expected a selectivity.json file")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ThresholdsError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ThresholdsError(f"{path}: not a selectivity export (a JSON object expected)")
        try:
            validate_document(document)
            check_digest(document)
            return cls.from_document(document, booster_sha256)
        except ThresholdsError as exc:
            raise ThresholdsError(f"{path}: {exc}") from exc


def content_digest(document: dict[str, Any]) -> str:
    """SHA-256 of the document without its own digest, as canonical JSON (sorted keys, no
    spaces, UTF-8): any change of a value, a key or a number's text changes it."""
    body = {k: v for k, v in document.items() if k != DIGEST_KEY}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_digest(document: dict[str, Any]) -> None:
    """Refuse a document whose content differs from what export bound (`content_sha256`)."""
    recorded = document.get(DIGEST_KEY)
    if recorded is None:
        raise ThresholdsError(
            f"no {DIGEST_KEY}: the file was not written by `targeting export`; export it again"
        )
    try:
        actual = content_digest(document)
    except ValueError as exc:  # NaN or infinity: JSON allows neither
        raise ThresholdsError(f"holds a value JSON does not allow ({exc})") from None
    if actual != recorded:
        raise ThresholdsError(
            f"the file was edited after export ({DIGEST_KEY} {str(recorded)[:12]}... recorded, "
            f"the content gives {actual[:12]}...): a changed cut-off or policy must come from "
            "`targeting export`, which binds the whole document again"
        )


def schema() -> dict[str, Any]:
    """The JSON Schema of selectivity.json (package data)."""
    text = resources.files("pipeline.serve").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _cutoff_key(cut: Cutoff) -> tuple[float, ...]:
    if cut["score"] is None:
        return (np.inf, np.inf, np.inf)
    return tuple(
        -np.inf if cut.get(part) is None else float(cut[part])  # type: ignore[arg-type]
        for part in CUTOFF_PARTS
    )


def validate_document(document: dict[str, Any]) -> None:
    """JSON Schema, then what a schema cannot say: cut-offs ordered by severity, rates in [0, 1]."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [
            f"  {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:10]
        ]
        raise ThresholdsError("selectivity file does not match its schema:\n" + "\n".join(lines))
    if document["schema_version"] != SCHEMA_VERSION:
        raise ThresholdsError(
            f"schema version {document['schema_version']} is not {SCHEMA_VERSION}"
        )
    names = [c["name"] for c in document["channels"]]
    _check_semantics(document, names)
    if sum(c["rate"] for c in document["channels"]) > 1.0 + 1e-9:
        raise ThresholdsError("channel rates add up to more than 1")
    groups: list[tuple[str, dict[str, Any]]] = [("global", document["cutoffs"])]
    groups += [(f"office {o}", g) for o, g in document["offices"].items()]
    for label, group in groups:
        for kind in ("cutoffs", "aeo_cutoffs"):
            cuts = group[kind]
            missing = [c for c in names if c not in cuts]
            if missing:
                raise ThresholdsError(f"{label} {kind}: no cut-off for channel(s) {missing}")
            for severe, lighter in itertools.pairwise(names):
                if _cutoff_key(cuts[severe]) < _cutoff_key(cuts[lighter]):
                    raise ThresholdsError(
                        f"{label} {kind}: the {severe} cut-off {cuts[severe]} is below the "
                        f"{lighter} cut-off {cuts[lighter]} (cut-offs must be ordered)"
                    )
        rates = group.get("rates", {})
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ThresholdsError(f"{label}: channel rates add up to more than 1")


def _check_semantics(document: dict[str, Any], names: list[str]) -> None:
    """What makes a schema-valid export unusable: numbers that are not finite, channels that are
    not defined, invalid declarations released green."""
    serving = document["serving"]
    default = serving["default_channel"]
    if len(set(names)) != len(names):
        raise ThresholdsError(f"channels are named twice: {names}")
    if default in names:
        raise ThresholdsError(f"the default channel {default!r} is also a controlled channel")
    invalid = serving["invalid_channel"]
    if invalid == default or not str(invalid).strip():
        raise ThresholdsError(
            f"serving/invalid_channel is {invalid!r}: a declaration that fails validation must "
            f"never be released to the default channel {default!r}"
        )
    random_policy = document["random"]
    if float(random_policy["rate"]) > 0 and random_policy["channel"] not in names:
        raise ThresholdsError(
            f"random/channel {random_policy['channel']!r} is not a defined controlled channel "
            f"(channels: {', '.join(names) or 'none'})"
        )
    numbers = [("random/rate", random_policy["rate"])]
    numbers += [(f"channels/{c['name']}/rate", c["rate"]) for c in document["channels"]]
    groups: list[tuple[str, dict[str, Any]]] = [("cutoffs", document["cutoffs"])]
    groups += [(f"offices/{o}", g) for o, g in document["offices"].items()]
    for label, group in groups:
        for kind in ("cutoffs", "aeo_cutoffs"):
            unknown = sorted(set(group[kind]) - set(names))
            if unknown:
                raise ThresholdsError(f"{label}/{kind}: cut-off for undefined channel(s) {unknown}")
            for channel, cut in group[kind].items():
                numbers += [
                    (f"{label}/{kind}/{channel}/{part}", value)
                    for part, value in cut.items()
                    if value is not None
                ]
        numbers += [(f"{label}/rates/{c}", r) for c, r in group.get("rates", {}).items()]
    bad = [
        f"{where} = {value!r}"
        for where, value in numbers
        if not isinstance(value, int | float) or not np.isfinite(float(value))
    ]
    if bad:
        raise ThresholdsError("values that are not finite numbers: " + "; ".join(bad[:5]))


# --- computing and applying ------------------------------------------------------------------


def forced_selection(
    declarations: pd.DataFrame, random_rate: float, random_key: str, rules: list[RuleConfig]
) -> tuple[np.ndarray, pd.Series]:
    """Random stratum mask, and the first matching rule's name (<NA> when none)."""
    drawn = random_draw(declarations["declaration_id"], random_key, random_rate)
    return drawn, rule_matches(declarations, rules)


def _aeo_flags(declarations: pd.DataFrame) -> np.ndarray:
    if "aeo" not in declarations.columns:
        return np.zeros(len(declarations), dtype=bool)
    flags = declarations["aeo"].astype("boolean").fillna(False)
    return np.asarray(flags.to_numpy(dtype=bool))


def compute_cutoffs(reference: pd.DataFrame, serve: ServeConfig, days: float) -> dict[str, Any]:
    """The channel part of the export from a scored reference window.

    `reference`: one row per declaration with `declaration_id`, `office`, `aeo`, `score`,
    `margin`, `probability`, `expected_revenue` and the columns the rules name; `days`: the
    window's length, for daily flows and capacities. Returns the `channels`, `cutoffs`, `offices`,
    `aeo`, `random` and `rules` entries of the document.
    """
    if reference.empty:
        raise ThresholdsError("the reference window holds no declarations")
    key = serve_random_key(serve)
    rank = ranking_key(reference, reference["score"], reference["margin"], key)
    drawn, rule = forced_selection(reference, serve.random_rate, key, serve.rules)
    forced = drawn | rule.notna().to_numpy()
    aeo = _aeo_flags(reference)
    rates = dict(serve.channels)
    glob = group_cutoffs(rank, forced, aeo, rates, serve.aeo_factor)
    offices: dict[str, Any] = {}
    if serve.per_office:
        office = reference["office"].astype("string").fillna("")
        per_office = office_rates(office, days, serve)
        codes, names = pd.factorize(office)
        for i, name in enumerate(names):
            rows = codes == i
            meta = per_office[str(name)]
            o_rates = {c: float(meta[f"rate.{c}"] or 0.0) for c in rates}
            cuts = group_cutoffs(rank[rows], forced[rows], aeo[rows], o_rates, serve.aeo_factor)
            offices[str(name)] = {
                "rates": o_rates,
                "daily_flow": meta["daily_flow"],
                "capacity": meta["capacity"],
                **cuts,
            }
    return {
        "channels": [{"name": c, "rate": float(r)} for c, r in rates.items()],
        "cutoffs": {"rates": rates, **glob},
        "offices": offices,
        "aeo": {
            "factor": serve.aeo_factor,
            "method": "separate cut-offs; AEO model-selection rate = factor x the others' rate, "
            "overall share kept at the target",
        },
        "random": {
            "rate": serve.random_rate,
            "key_sha256": key_fingerprint(key),
            "key_env": serve.random_key_env,
            "algorithm": RANDOM_ALGORITHM,
            "channel": serve.random_channel,
            "reason": RANDOM_REASON,
        },
        "rules": [rule.model_dump(mode="json") for rule in serve.rules],
        "serving": {
            "reasons": serve.reasons,
            "reason_method": serve.reason_method,
            "invalid_channel": serve.invalid_channel,
            "default_channel": DEFAULT_CHANNEL,
        },
    }


def ranking_key(
    declarations: pd.DataFrame, score: ArrayLike, margin: ArrayLike, random_key: str
) -> np.ndarray:
    """(n, 3) ranking key of each declaration: score, margin, tie-break value."""
    return np.column_stack(
        [
            np.asarray(score, dtype=float),
            np.asarray(margin, dtype=float),
            tiebreak_values(declarations["declaration_id"], random_key),
        ]
    )


def _cutoff_arrays(
    document: dict[str, Any], channel: str, office: pd.Series, aeo: np.ndarray
) -> np.ndarray:
    """Per-row cut-off of a channel, (n, 3): the office's when it has one, else the global one."""

    def value(cut: Cutoff, part: str) -> float:
        v = cut.get(part)
        return np.nan if v is None else float(v)

    glob = document["cutoffs"]
    cut = np.column_stack(
        [
            np.where(
                aeo,
                value(glob["aeo_cutoffs"][channel], part),
                value(glob["cutoffs"][channel], part),
            )
            for part in CUTOFF_PARTS
        ]
    )
    offices: dict[str, Any] = document["offices"]
    if offices:
        known = office.isin(list(offices)).to_numpy(dtype=bool)
        if known.any():
            for i, part in enumerate(CUTOFF_PARTS):
                other = office.map(
                    {o: value(g["cutoffs"][channel], part) for o, g in offices.items()}
                )
                special = office.map(
                    {o: value(g["aeo_cutoffs"][channel], part) for o, g in offices.items()}
                )
                per_row = np.where(aeo, special.to_numpy(dtype=float), other.to_numpy(dtype=float))
                cut[known, i] = per_row[known]
    return cut


def assign_channels(
    thresholds: Thresholds,
    declarations: pd.DataFrame,
    score: np.ndarray,
    margin: np.ndarray,
) -> pd.DataFrame:
    """Channel, selection reason and selection probability of each declaration.

    `declarations` holds `declaration_id`, `office`, `aeo` and the columns the rules name,
    row-aligned with `score` and `margin`. Returns a frame on the same index.
    """
    document = thresholds.document
    office = declarations["office"].astype("string").fillna("")
    aeo = _aeo_flags(declarations)
    channel = np.full(len(declarations), thresholds.default_channel, dtype=object)
    open_rows = np.ones(len(declarations), dtype=bool)
    ids = declarations["declaration_id"]
    key = thresholds.key
    # The tie-break value is hashed only for rows whose score and margin equal a cut-off's.
    rank = np.column_stack(
        [np.asarray(score, float), np.asarray(margin, float), np.full(len(ids), np.nan)]
    )
    for name in thresholds.channels:
        cut = _cutoff_arrays(document, name, office, aeo)
        tied = (rank[:, 0] == cut[:, 0]) & (rank[:, 1] == cut[:, 1]) & np.isnan(rank[:, 2])
        if tied.any():
            rank[tied, 2] = tiebreak_values(ids[tied], key)
        reached = open_rows & _reaches(rank, cut)
        channel[reached] = name
        open_rows &= ~reached
    reason = np.full(len(declarations), MODEL_REASON, dtype=object)
    reason[open_rows] = None
    probability = np.full(len(declarations), np.nan)
    random_policy = document["random"]
    drawn, rule = forced_selection(
        declarations, float(random_policy["rate"]), key, thresholds.rules
    )
    ruled = rule.notna().to_numpy(dtype=bool) & ~drawn
    red = next(iter(thresholds.channels), thresholds.default_channel)
    channel[ruled] = red
    reason[ruled] = rule.to_numpy(dtype=object)[ruled]
    probability[ruled] = 1.0
    channel[drawn] = random_policy["channel"]
    reason[drawn] = RANDOM_REASON
    probability[drawn] = float(random_policy["rate"])
    return pd.DataFrame(
        {"channel": channel, "selection_reason": reason, "selection_probability": probability},
        index=declarations.index,
    )


NO_LEVEL_BASIS = (
    "no interval: the model's level is not anchored on a random stratum, so nothing unbiased "
    "says how far the expected hit rates may be off"
)


def hit_rate_bounds(
    probability: np.ndarray,
    level_shifts: list[float] | None,
    controls: int,
    confidence: float = 0.95,
) -> tuple[list[float] | None, list[float] | None]:
    """How far a channel's hit rate may fall from its expected one, from the level's
    uncertainty (`Calibration.level_shifts`) and, for the range, the luck of `controls` draws.

    Returns (interval, range), each [low, high] or None without level shifts:
    - the interval of the *expected* hit rate: the mean of `probability` under each quantile of
      the level, at the (1 - confidence) / 2 ends;
    - the *prediction* range of the hit rate `controls` controls of the channel will show:
      quantiles of the binomial mixture over the level's quantiles (exact, no sampling).
    Written by hand: scipy has binomial quantiles, not those of a mixture of binomials.
    """
    if not level_shifts or len(probability) == 0:
        return None, None
    from scipy.stats import binom

    p = np.asarray(probability, dtype=float)
    shifts = np.asarray(level_shifts, dtype=float)
    # (quantiles x rows): a handful of quantiles, each a vectorised pass over the rows
    means = np.array([shift_log_odds(p, d).mean() for d in shifts])
    tail = (1.0 - confidence) / 2.0
    # The shifts sit at the level's quantiles (k + 1/2) / K, and the mean is monotone in the
    # shift: the interval's ends are read at the posterior's own tail quantiles (k = 2 and 97 of
    # 100 for 95 %), not at the sample quantiles of the K means (a narrower 94 % interval).
    levels = (np.arange(len(shifts)) + 0.5) / len(shifts)
    interval = np.interp([tail, 1.0 - tail], levels, np.sort(means))
    n = max(int(controls), 1)
    low_hits = int(binom.ppf(tail / 10, n, means.min()))
    high_hits = int(binom.ppf(1.0 - tail / 10, n, means.max()))
    hits = np.arange(low_hits, high_hits + 1)
    cdf = binom.cdf(hits[None, :], n, means[:, None]).mean(axis=0)
    bounds = hits[np.minimum(np.searchsorted(cdf, [tail, 1.0 - tail]), len(hits) - 1)] / n
    return [float(v) for v in interval], [float(v) for v in bounds]


def channel_kpis(
    channels: pd.DataFrame,
    probability: np.ndarray,
    expected_revenue: np.ndarray,
    targets: dict[str, float],
    days: float,
    level_shifts: list[float] | None = None,
    level_basis: str | None = None,
) -> dict[str, Any]:
    """Realised shares and expected hit rate / revenue of each channel, from calibrated scores.

    Expected hit rate = mean calibrated probability of the channel's declarations; expected
    revenue = sum of P(hit) x E[revenue | hit] (absent when the model has no revenue part).
    With the level's uncertainty (`level_shifts`), each channel also gets the 95 % interval of
    its expected hit rate and the range of the hit rate its controls over a stretch like the
    reference window will show (`hit_rate_bounds`); `level_basis` says what they rest on.

    The random draw is reported on its own (``random``: its channel, share and expected hit
    rate), not mixed into the KPIs of the channel it goes to: a channel's entry holds its
    targeted selections (rules and model), so that its share plus the draw's makes the target
    of the draw's channel. ``warnings`` names every channel whose expected hit rate is above
    that of a more severe one (`channel_order_warnings`).
    """
    n = len(channels)
    frame = pd.DataFrame(
        {
            "channel": channels["channel"].to_numpy(),
            "reason": channels["selection_reason"].to_numpy(),
            "p": probability,
            "revenue": expected_revenue,
        }
    )
    has_revenue = bool(np.isfinite(expected_revenue).any())
    drawn = frame["reason"].astype("string").eq(RANDOM_REASON).fillna(False).to_numpy(dtype=bool)
    grouped = frame.loc[~drawn].groupby("channel", sort=False)
    out: dict[str, Any] = {}
    for name in [*targets, DEFAULT_CHANNEL]:
        rows = grouped.get_group(name) if name in grouped.groups else frame.iloc[:0]
        entry = _kpi_entry(rows, n, days, level_shifts, has_revenue)
        out[name] = {"target": targets.get(name), **entry}
    random_rows = frame.loc[drawn]
    random_entry = {
        "channel": str(random_rows["channel"].iloc[0]) if len(random_rows) else None,
        **_kpi_entry(random_rows, n, days, level_shifts, has_revenue),
    }
    random_entry.pop("by_reason")
    basis = (level_basis or "the level's posterior") if level_shifts else NO_LEVEL_BASIS
    return {
        "declarations": n,
        "days": days,
        "hit_rate_uncertainty": basis,
        "channels": out,
        "random": random_entry,
        "warnings": channel_order_warnings(out),
    }


def _kpi_entry(
    rows: pd.DataFrame, n: int, days: float, level_shifts: list[float] | None, revenue: bool
) -> dict[str, Any]:
    """Share, expected hit rate (with its bounds), hits and revenue of some declarations."""
    interval, spread = hit_rate_bounds(rows["p"].to_numpy(), level_shifts, len(rows))
    entry: dict[str, Any] = {
        "declarations": len(rows),
        "share": len(rows) / n if n else 0.0,
        "per_day": len(rows) / max(days, 1e-9),
        "expected_hit_rate": float(rows["p"].mean()) if len(rows) else None,
        "expected_hit_rate_interval": interval,
        "hit_rate_range": spread,
        "expected_hits": float(rows["p"].sum()),
        "by_reason": {str(k): int(v) for k, v in rows["reason"].value_counts().items()},
    }
    if revenue:
        entry["expected_revenue"] = float(np.nansum(rows["revenue"]))
        entry["expected_revenue_per_control"] = (
            float(np.nanmean(rows["revenue"])) if len(rows) else None
        )
    return entry


def channel_order_warnings(channels: dict[str, Any]) -> list[str]:
    """Channels keep their order when each expected hit rate is at least that of every less
    severe channel (red >= yellow >= green); a warning for each pair that does not, naming
    both rates. Channels without declarations are not judged."""
    rated = [
        (name, float(entry["expected_hit_rate"]))
        for name, entry in channels.items()
        if entry.get("expected_hit_rate") is not None
    ]
    warnings = []
    for i, (severe, high) in enumerate(rated):
        for lighter, rate in rated[i + 1 :]:
            if rate > high:
                warnings.append(
                    f"the channels do not keep their order: {lighter}'s expected hit rate "
                    f"({rate:.1%}) is above {severe}'s ({high:.1%}); a cut-off on a plateau of "
                    f"the calibration or a rule sending low-risk declarations to {severe} puts "
                    "controls where they find less"
                )
    return warnings


def office_table(
    document: dict[str, Any], channels: pd.DataFrame, reference: pd.DataFrame
) -> pd.DataFrame:
    """The export flat, for systems without JSON: one row per office (``*``: the global
    cut-offs, for offices the export does not name) and channel, with the cut-offs (on the
    scorer's score and margin, which only the registered scorer computes) for
    other and AEO declarations and the expected KPIs on the reference window (declarations,
    share of the office's flow, expected hit rate and hits)."""
    names = [c["name"] for c in document["channels"]]
    groups = {"*": document["cutoffs"], **document["offices"]}
    rows = [
        {
            "office": office,
            "channel": name,
            "rate": group.get("rates", {}).get(name),
            **{f"cutoff_{part}": group["cutoffs"][name][part] for part in CUTOFF_PARTS},
            **{f"aeo_cutoff_{part}": group["aeo_cutoffs"][name][part] for part in CUTOFF_PARTS},
        }
        for office, group in groups.items()
        for name in names
    ]
    cuts = pd.DataFrame(rows)
    frame = pd.DataFrame(
        {
            "office": reference["office"].astype("string").fillna("").to_numpy(dtype=object),
            "channel": channels["channel"].to_numpy(dtype=object),
            "p": reference["probability"].to_numpy(dtype=float),
        }
    )
    everyone = frame.assign(office="*")
    both = pd.concat([everyone, frame.loc[frame["office"].isin(list(document["offices"]))]])
    flow = both.groupby("office").size().rename("office_declarations")
    kpis = (
        both.groupby(["office", "channel"])["p"]
        .agg(declarations="size", expected_hit_rate="mean", expected_hits="sum")
        .reset_index()
    )
    table = cuts.merge(kpis, on=["office", "channel"], how="left").merge(
        flow, left_on="office", right_index=True, how="left"
    )
    table["declarations"] = table["declarations"].fillna(0).astype(int)
    table["expected_share"] = table["declarations"] / table["office_declarations"]
    table["expected_hits"] = table["expected_hits"].fillna(0.0)
    return table.drop(columns="office_declarations")


def new_document(
    policy: dict[str, Any],
    *,
    model: dict[str, Any],
    rank_by: str,
    manifest_sha256: str,
    revenue_weight: float = 1.0,
    windows: dict[str, Any],
    features: dict[str, Any],
    snapshot: dict[str, Any],
    kpis: dict[str, Any],
    created_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Assemble the export document from its parts (see selectivity.schema.json)."""
    stamp = created_at or dt.datetime.now(dt.UTC)
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": stamp.isoformat(timespec="seconds"),
        "model": model,
        "rank_by": rank_by,
        "revenue_weight": float(revenue_weight),
        "feature_manifest_sha256": manifest_sha256,
        "windows": windows,
        "features": features,
        "snapshot": snapshot,
        **policy,
        "kpis": kpis,
    }


def manifest_sha256(manifest: pd.DataFrame) -> str:
    """Fingerprint of the feature manifest (names, dtypes, stages, in order)."""
    columns = [c for c in ("name", "dtype", "stage") if c in manifest.columns]
    text = manifest[columns].astype(str).to_csv(index=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def reference_window(
    lodged_at: pd.Series, serve: ServeConfig, end: pd.Timestamp | None = None
) -> Window:
    """The last `reference_days` of the data before `end`.

    `end`: where the run's held-out stretch begins (the end of its test window); without it,
    the end of the usable data before the last `score_last_days` (`timeaxis.data_end`, the day
    boundary where the stretch `run` scores begins).
    """
    end = data_end(lodged_at, serve.score_last_days) if end is None else pd.Timestamp(end)
    start = max(end - pd.Timedelta(days=serve.reference_days), pd.Timestamp(lodged_at.min()))
    return Window("reference", start, end)


# Per-channel entries a scenario table leaves out: nested, or bounds it does not compute.
SCENARIO_DROPS = ("by_reason", "expected_hit_rate_interval", "hit_rate_range")


def capacity_scenarios(
    reference: pd.DataFrame, serve: ServeConfig, days: float, red_rates: list[float]
) -> pd.DataFrame:
    """What each red capacity buys on the reference window, channel by channel.

    For each share in `red_rates`, the first (most severe) channel's target is set to it, the
    other channels keep theirs, the cut-offs are computed (`compute_cutoffs`) and the reference
    declarations are assigned as the selectivity system would (`assign_channels`: random draw
    and rules included). `reference` is what `compute_cutoffs` takes. Returns one row per
    scenario and channel, the random draw on a row of its own (channel ``random``, its share
    part of the red target): red_rate, channel, target, declarations, share, per_day,
    expected_hit_rate, expected_hits and, when the model has a revenue part, expected_revenue
    and expected_revenue_per_control (the `channel_kpis` entries).
    """
    if not serve.channels:
        raise ThresholdsError("serve.channels is empty: no channel to vary")
    severe = next(iter(serve.channels))
    score = reference["score"].to_numpy(dtype=float)
    margin = reference["margin"].to_numpy(dtype=float)
    probability = reference["probability"].to_numpy(dtype=float)
    revenue = reference["expected_revenue"].to_numpy(dtype=float)
    rows: list[dict[str, Any]] = []
    for rate in red_rates:  # a handful of scenarios, each vectorised over declarations
        scenario = serve.model_copy(deep=True)
        scenario.channels = {**serve.channels, severe: float(rate)}
        policy = compute_cutoffs(reference, scenario, days)
        channels = assign_channels(
            Thresholds(policy, serve_random_key(serve)), reference, score, margin
        )
        kpis = channel_kpis(channels, probability, revenue, scenario.channels, days)
        for name, entry in kpis["channels"].items():
            figures = {k: v for k, v in entry.items() if k not in SCENARIO_DROPS}
            rows.append({"red_rate": float(rate), "channel": name, **figures})
        if kpis["random"]["declarations"]:  # the draw on its own row (it sits in the red share)
            figures = {k: v for k, v in kpis["random"].items() if k not in SCENARIO_DROPS}
            rows.append({"red_rate": float(rate), **figures, "channel": RANDOM_REASON})
    return pd.DataFrame(rows)
