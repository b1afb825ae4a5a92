"""The selectivity export's format (`selectivity.json`): one pydantic model, `SelectivityExport`.

The model is the format's only definition: `validate_document` checks a parsed export with it
(types, ranges, and what a schema cannot say: channels defined once, cut-offs ordered by
severity, rates adding up to at most 1), and the JSON Schema other systems read
(pipeline/serve/selectivity.schema.json) and docs/selectivity.md are generated from it by
tools/selectivity_doc.py, which also checks that both are up to date. The document itself stays
the JSON the export wrote (its `content_sha256` binds those bytes' content); the model only
judges it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
from typing import Annotated, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue

from pipeline.config import RuleConfig

SCHEMA_VERSION = "1.0"
SCHEMA_FILE = "selectivity.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://customs-targeting/selectivity.schema.json"
DIGEST_KEY = "content_sha256"

Document = dict[str, JsonValue]  # a parsed export, as written
_M = TypeVar("_M", bound="ChannelPolicy")


class ThresholdsError(ValueError):
    """A selectivity file that cannot be used: invalid, inconsistent, or made for another model."""


def _iso_time(value: str) -> str:
    dt.datetime.fromisoformat(value)  # refuses what is not an ISO 8601 time
    return value


Rate = Annotated[float, Field(ge=0, le=1)]
Sha256 = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
IsoTime = Annotated[
    str, AfterValidator(_iso_time), Field(json_schema_extra={"format": "date-time"})
]


class _Closed(BaseModel):
    """An object of the export that holds only the fields named (numbers finite, no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Open(BaseModel):
    """An object of the export that may carry fields beyond those named (older or newer ones)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class Cutoff(_Closed):
    """A declaration reaches the cut-off when (score, margin, tiebreak) is at least as high,
    compared lexicographically; null: nobody."""

    score: float | None = Field(description="the score (what rank_by says) to reach")
    margin: float | None = Field(description="the booster margin, for ties on the score")
    tiebreak: Annotated[float, Field(ge=0, le=1)] | None = Field(
        description="the keyed tie-break value, for ties on score and margin"
    )

    def order(self) -> tuple[float, float, float]:
        """The cut-off as a sortable key: null score above every score (nobody reaches it)."""
        if self.score is None:
            return (math.inf, math.inf, math.inf)
        parts = (self.score, self.margin, self.tiebreak)
        return tuple(-math.inf if v is None else v for v in parts)  # type: ignore[return-value]


class CutoffGroup(_Open):
    """The rates and cut-offs of a group of declarations (all of them, or one office's)."""

    rates: dict[str, Rate] = Field(description="channel -> its target share in the group")
    cutoffs: dict[str, Cutoff] = Field(description="channel -> cut-off of non-AEO declarations")
    aeo_cutoffs: dict[str, Cutoff] = Field(description="channel -> cut-off of AEO declarations")
    daily_flow: Annotated[float, Field(ge=0)] | None = Field(
        None, description="an office's declarations per day on the reference window"
    )
    capacity: Annotated[float, Field(ge=0)] | None = Field(
        None, description="an office's red controls per day (serve.office_capacity), if given"
    )


class ModelRef(_Open):
    """The model the cut-offs belong to."""

    name: str | None = Field(description="registered model name")
    version: str | int | None = Field(description="registered model version")
    uri: str | None = Field(description="where the model lives (runs:/<run id>/...)")
    run_id: str | None = Field(None, description="MLflow run of the model")
    tracking_uri: str | None = Field(
        None, description="not written by export (machine-local); accepted in older files"
    )
    booster_sha256: Sha256 = Field(
        description="SHA-256 of the booster the cut-offs were set for; another model is refused"
    )


class FeaturesPart(_Open):
    """What the scorer rebuilds features with, and how it names them in reasons."""

    config: dict[str, JsonValue] = Field(
        description="the feature configuration the scorer rebuilds features with"
    )
    descriptions: dict[str, str] = Field(description="feature name -> description (reason phrases)")


class SnapshotPart(_Open):
    """Where the serving feature snapshot is."""

    uri: str | None = Field(None, description="the snapshot's MLflow artefact")
    path: str | None = Field(
        None,
        description="a local snapshot folder (never written by export; hand-made local "
        "deployments only)",
    )


class Channel(_Closed):
    """A controlled channel and its target share."""

    name: Annotated[str, Field(min_length=1)] = Field(description="the channel's name")
    rate: Rate = Field(description="its target share of all declarations")


class AeoPolicy(_Open):
    """The AEO policy."""

    factor: Annotated[float, Field(ge=0)] = Field(
        description="AEO model-selection rate / the others' rate (serve.aeo_factor)"
    )
    method: str | None = Field(None, description="the policy in words")


class RandomPolicy(_Closed):
    """The random draw; the key itself is never written (a `key` field is refused)."""

    rate: Rate = Field(description="the chance of each declaration to be drawn")
    key_sha256: Sha256 = Field(
        description="SHA-256 of 'customs-targeting random key fingerprint:' + the secret key; "
        "the key itself is never written"
    )
    key_env: str | None = Field(
        None, description="environment variable the scorer reads the key from"
    )
    algorithm: str = Field(
        description="how the random draw is computed from the declaration id and the key"
    )
    channel: str = Field(description="controlled channel of the randomly drawn declarations")
    reason: str = Field(description="selection reason written for them")


class Serving(_Open):
    """How the scorer answers."""

    reasons: Annotated[int, Field(ge=0)] = Field(
        description="reason codes returned for red and yellow rows"
    )
    reason_method: Literal["treeshap_red", "treeshap", "approximate"] | None = Field(
        None,
        description="treeshap_red: exact TreeSHAP for the red channel, approximate (Saabas) for "
        "the other controlled rows; treeshap: exact for all; approximate: Saabas for all",
    )
    invalid_channel: str = Field(
        description="channel of declarations that fail validation; never the default channel"
    )
    default_channel: str = Field(description="channel of declarations reaching no cut-off (green)")


KPIS = (
    "expected shares, hit rates and revenue per channel on the reference window: "
    "channels.<name> holds declarations, share, per_day, expected_hit_rate with its 95 % "
    "expected_hit_rate_interval and the 95 % hit_rate_range a stretch as long as the reference "
    "window may show (both null when the model's level is not anchored on a random stratum), "
    "expected_hits, by_reason and, with a revenue model, expected_revenue, for the channel's "
    "targeted selections (rules and model); random holds the same figures for the random draw "
    "(and the channel it goes to), reported on its own so that it does not lower the KPIs of its "
    "channel; warnings names each channel whose expected hit rate is above that of a more severe "
    "one (red >= yellow >= green expected); hit_rate_uncertainty says what the bounds rest on, "
    "or why there are none"
)


class ChannelPolicy(_Open):
    """What serving reads to give a declaration its channel: the channels, cut-offs, offices,
    random draw, rules and serving settings (the rest of an export describes where it came
    from). Checked for what a schema cannot say: channels defined once, invalid declarations
    never released green, rates adding up to at most 1, cut-offs in order of severity."""

    channels: list[Channel] = Field(
        min_length=1,
        description="controlled channels in order of severity, each with its target share",
    )
    cutoffs: CutoffGroup = Field(
        description="the global cut-offs (offices without their own, new offices)"
    )
    offices: dict[str, CutoffGroup] = Field(
        description="office -> its own rates and cut-offs (serve.per_office)"
    )
    random: RandomPolicy = Field(description="the random draw (compliance measurement stratum)")
    rules: list[RuleConfig] = Field(
        description="mandatory risk criteria, in priority order (matches go to the first channel)"
    )
    serving: Serving = Field(description="how the scorer answers")

    @property
    def targets(self) -> dict[str, float]:
        """Channel -> target share, in order of severity."""
        return {c.name: c.rate for c in self.channels}

    @model_validator(mode="after")
    def _usable(self) -> Self:
        names = [c.name for c in self.channels]
        _check_channels(names, self.serving, self.random)
        if sum(c.rate for c in self.channels) > 1.0 + 1e-9:
            raise ValueError("channel rates add up to more than 1")
        groups = [("global", self.cutoffs)] + [(f"office {o}", g) for o, g in self.offices.items()]
        for label, group in groups:
            _check_group(label, group, names)
        return self


class SelectivityExport(ChannelPolicy):
    """Channel cut-offs of a customs targeting model and the policies around them
    (pipeline/serve/cutoffs.py sets them, pipeline/serve/channels.py applies them)."""

    model_config = ConfigDict(title="Selectivity export", extra="forbid")

    schema_version: Literal["1.0"] = Field(description="version of this format")
    created_at: IsoTime = Field(description="when the export was made (UTC, ISO 8601)")
    model: ModelRef = Field(description="the model the cut-offs belong to")
    rank_by: Literal["probability", "expected_revenue", "blend"] = Field(
        description="what the score column and the cut-offs hold: the probability of a hit, "
        "the expected revenue, or a blend of the two"
    )
    revenue_weight: Annotated[float, Field(ge=0, le=1)] = Field(
        1.0, description="blend: the score is P(hit) x E[revenue | hit] ** revenue_weight"
    )
    feature_manifest_sha256: Sha256 = Field(
        description="fingerprint of the feature manifest (names, dtypes, stages)"
    )
    windows: dict[str, JsonValue] = Field(
        description="time windows of the model and the reference window of the cut-offs"
    )
    features: FeaturesPart
    snapshot: SnapshotPart = Field(
        description="the serving feature snapshot; uri: its MLflow artefact "
        "(runs:/<run id>/snapshot)"
    )
    aeo: AeoPolicy = Field(description="the AEO policy: factor x the others' model-selection rate")
    kpis: dict[str, JsonValue] = Field(description=KPIS)
    content_sha256: Sha256 | None = Field(
        None,
        description="SHA-256 of the document without this key, as canonical JSON (keys sorted, "
        "separators ',' and ':', UTF-8); written by export, checked at load: any edit is refused "
        "until exported again.",
    )


def _check_channels(names: list[str], serving: Serving, random: RandomPolicy) -> None:
    default = serving.default_channel
    if len(set(names)) != len(names):
        raise ValueError(f"channels are named twice: {names}")
    if default in names:
        raise ValueError(f"the default channel {default!r} is also a controlled channel")
    invalid = serving.invalid_channel
    if invalid == default or not invalid.strip():
        raise ValueError(
            f"serving/invalid_channel is {invalid!r}: a declaration that fails validation must "
            f"never be released to the default channel {default!r}"
        )
    if random.rate > 0 and random.channel not in names:
        raise ValueError(
            f"random/channel {random.channel!r} is not a defined controlled channel "
            f"(channels: {', '.join(names) or 'none'})"
        )


def _check_group(label: str, group: CutoffGroup, names: list[str]) -> None:
    for kind in ("cutoffs", "aeo_cutoffs"):
        cuts: dict[str, Cutoff] = getattr(group, kind)
        unknown = sorted(set(cuts) - set(names))
        if unknown:
            raise ValueError(f"{label} {kind}: cut-off for undefined channel(s) {unknown}")
        missing = [c for c in names if c not in cuts]
        if missing:
            raise ValueError(f"{label} {kind}: no cut-off for channel(s) {missing}")
        for severe, lighter in itertools.pairwise(names):
            if cuts[severe].order() < cuts[lighter].order():
                raise ValueError(
                    f"{label} {kind}: the {severe} cut-off {cuts[severe].model_dump()} is below "
                    f"the {lighter} cut-off {cuts[lighter].model_dump()} (cut-offs must be "
                    "ordered)"
                )
    if sum(group.rates.values()) > 1.0 + 1e-9:
        raise ValueError(f"{label}: channel rates add up to more than 1")


def validate_document(document: Document) -> SelectivityExport:
    """The export read by its model; a `ThresholdsError` naming the first problems when it does
    not match it."""
    return _read(SelectivityExport, document)


def read_policy(document: Document) -> ChannelPolicy:
    """The channel policy of an export (or of a document holding only that part)."""
    return _read(ChannelPolicy, document)


def _read(model: type[_M], document: Document) -> _M:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        lines = [
            f"  {'/'.join(map(str, e['loc'])) or '<root>'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()[:10]
        ]
        raise ThresholdsError(
            "selectivity file does not match its schema:\n" + "\n".join(lines)
        ) from None


def schema() -> JsonSchemaValue:
    """The JSON Schema of selectivity.json, generated from `SelectivityExport`."""
    generated = SelectivityExport.model_json_schema()
    return {"$schema": DRAFT, "$id": SCHEMA_ID, **generated}


def content_digest(document: Document) -> str:
    """SHA-256 of the document without its own digest, as canonical JSON (sorted keys, no
    spaces, UTF-8): any change of a value, a key or a number's text changes it."""
    body = {k: v for k, v in document.items() if k != DIGEST_KEY}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_digest(document: Document) -> None:
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
