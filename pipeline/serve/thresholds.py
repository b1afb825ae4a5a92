"""`Thresholds`: the selectivity export in hand (`selectivity.json`), its file and its key.

The document is the JSON the export wrote, checked against its model
(`pipeline.serve.selectivity.SelectivityExport`) when saved and loaded and bound by its
`content_sha256`; the accessors read what serving needs. Cut-offs are set by
`pipeline.serve.cutoffs` and applied by `pipeline.serve.channels`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline.config import RuleConfig
from pipeline.plan import RankingPolicy
from pipeline.serve.draw import KEY_ENV, key_fingerprint, random_key
from pipeline.serve.selectivity import (
    DIGEST_KEY,
    ChannelPolicy,
    ThresholdsError,
    check_digest,
    content_digest,
    read_policy,
    validate_document,
)


@dataclass(frozen=True)
class Thresholds:
    """The selectivity export: everything a selectivity system needs to reproduce the channels.

    `document`: the JSON as the export writes it (or, in memory, only its channel policy: what
    `pipeline.serve.cutoffs.compute_cutoffs` returns); `policy` is its channel part, read once.
    """

    document: dict[str, Any]  # JSON as written: what the content digest binds
    random_key: str | None = field(default=None, repr=False, compare=False)

    @cached_property
    def policy(self) -> ChannelPolicy:
        """The channel part of the document, read by its model (refused when unusable)."""
        return read_policy(self.document)

    @property
    def key(self) -> str:
        """The random draw's key: the one given, else from the environment variable the export
        names; refused when it does not match the export's fingerprint."""
        drawn = self.policy.random
        env = drawn.key_env or KEY_ENV
        key = self.random_key if self.random_key is not None else random_key(env)
        if key_fingerprint(key) != drawn.key_sha256:
            raise ThresholdsError(
                "the random-draw key does not match the export's fingerprint (random/key_sha256 "
                f"{drawn.key_sha256[:12]}...): set {env} (or {env}_FILE) to the key the "
                "export was made with"
            )
        return key

    # --- accessors ----------------------------------------------------------------------------
    @property
    def channels(self) -> dict[str, float]:
        """Channel -> target share, in order of severity."""
        return self.policy.targets

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
    def ranking(self) -> RankingPolicy:
        """The ranking policy the cut-offs were set on (`rank_by` with the blend's weight)."""
        return RankingPolicy(self.rank_by, self.revenue_weight)

    @property
    def random_rate(self) -> float:
        """Probability of the random draw."""
        return self.policy.random.rate

    @property
    def rules(self) -> list[RuleConfig]:
        """Mandatory rules, in priority order."""
        return self.policy.rules

    @property
    def reasons(self) -> int:
        """Reason codes given to red and yellow rows."""
        return self.policy.serving.reasons

    @property
    def reason_method(self) -> str:
        """`treeshap_red` (exact for the most severe channel, approximate for the others),
        `treeshap` (exact, pred_contribs) or `approximate` (approx_contribs)."""
        return self.policy.serving.reason_method or "treeshap"

    @property
    def invalid_channel(self) -> str:
        """Channel of declarations that fail validation."""
        return self.policy.serving.invalid_channel

    @property
    def default_channel(self) -> str:
        """Channel of declarations that reach no cut-off."""
        return self.policy.serving.default_channel

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
