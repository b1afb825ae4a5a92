"""What the replay reads of the config, resolved once: the backtest's section with the fallbacks
it takes from the simulator, the evaluation and serving (capacity, detection and delay, risk
criteria, ranking), so that no step of the loop reads the whole `Config`.

Only the refits (`retrain.Fitter`) keep the config: they run `targeting train`'s own fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import BacktestConfig, Config, MonitorConfig, RuleConfig
from pipeline.plan import RankingPolicy


@dataclass(frozen=True)
class ReplaySettings:
    """The backtest's section and what it falls back to, each decided here once.

    `capacity_rate`, `detection_rate` and `result_delay_days`: the backtest's, else the
    simulator's; `recorded_random_rate`: the simulator's random draw, which the historical policy
    replays; `rules`: the backtest's risk criteria, else the evaluation's; `ranking`: serving's
    ranking policy (a policy's own `rank_by` overrides it); `missing_result_delay_days`: when a
    control without a recorded result date is taken as known (the features' rule); `monitor`: the
    random stratum's interval settings.
    """

    backtest: BacktestConfig
    seed: int
    capacity_rate: float
    detection_rate: float
    result_delay_days: float
    recorded_random_rate: float
    rules: tuple[RuleConfig, ...]
    ranking: RankingPolicy
    missing_result_delay_days: float
    monitor: MonitorConfig

    @classmethod
    def of(cls, config: Config) -> ReplaySettings:
        """The settings of `config`, its fallbacks resolved."""
        bt, sim = config.backtest, config.simulate
        return cls(
            backtest=bt,
            seed=int(config.seed),
            capacity_rate=bt.capacity_rate or sim.capacity_rate,
            detection_rate=sim.detection_rate if bt.detection_rate is None else bt.detection_rate,
            result_delay_days=(
                sim.result_delay_days if bt.result_delay_days is None else bt.result_delay_days
            ),
            recorded_random_rate=sim.random_rate,
            rules=tuple(config.evaluate.rules if bt.rules is None else bt.rules),
            ranking=RankingPolicy(config.serve.rank_by, config.serve.revenue_weight),
            missing_result_delay_days=config.features.missing_result_delay_days,
            monitor=config.monitor,
        )
