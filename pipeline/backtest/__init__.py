"""The feedback loop replayed: selection policies over time, retrained on what they revealed.

Modules: `stream` (the replayed stream, the calendar of steps, office-day capacities, what a
control reveals), `selection` (a step's candidates, the top-k primitives, the Selection),
`policies` (each policy kind as a small strategy), `retrain` (feature rebuilds and refits),
`replay` (the loop that only schedules; `run_backtest`), `summary` (KPIs, first detections),
`settings` (what the replay reads of the config, resolved once).

`replay.run_backtest` replays a declaration stream in steps (weekly by default) after a warm-up:

1. **Warm-up.** The first `warmup_days` carry the historical policy's recorded outcomes; the
   initial model is trained on them with the same code as `targeting train`
   (`features.build.build_feature_set`, then `train.fit.fit` with fixed parameters: no tuning).
2. **Each step, each policy.** The step's declarations are scored by the policy's current model
   and selected within each office's daily capacity (`capacity_rate` of its flow that day,
   stochastically rounded with one seeded draw shared by every policy), in this order: the random
   share (a keyed-hash draw with a known probability, counted inside the capacity and thinned
   where an office-day drew more than it can control), the risk criteria when the policy applies
   them, the model's highest scores, and the exploration share (declarations drawn with weight
   p(1-p), where the model is least sure). Each kind is a strategy in `policies`.
3. **Reveal.** Only the selected declarations get an outcome. A declaration the historical policy
   controlled reveals its recorded outcome (hit, fraud type, revenue, delay); any other reveals
   what a control would have found according to the ground truth: a hit when it is fraudulent and
   the control detects it (probability `detection_rate`), the recoverable revenue, a result after
   an exponential delay. Detection and delay draws are keyed hashes of the declaration id, so
   two policies that control the same declaration see the same result (common random numbers).
   On data whose every row carries a label (KCS), the recorded label is revealed.
4. **Features and retraining.** Every `refresh_every_steps` the policy's feature set is rebuilt
   from the declarations and the outcomes it has revealed so far, through the step after the next
   rebuild; profiles are point-in-time, so a declaration sees an outcome only after its result
   date. Every `retrain_every_steps` (per policy) the model is refitted on that feature set with
   labels known before the retraining day. Between two rebuilds a declaration misses the outcomes
   of controls made after the last rebuild (the price of rebuilding monthly, not daily).

Policies (`config.backtest.policies`): `historical` replays the recorded controls (rules, officers
and the historical random draw); `rules` applies the risk criteria only; `model` ranks by the
model with optional random and exploration shares and its own retraining frequency.

Speed (bench/backtest.py, 500,000 declarations, 52 weekly steps, monthly retraining, one model
policy, 2 cores): 66 s on a quiet machine (210 s with the two cores shared, load ~5): training
~55-60 % (13 fits with early stopping and a revenue model, on the labels a policy reveals: their
number follows the capacity, not the stream), feature builds ~20-30 % (13 point-in-time passes
over the stream so far), scoring ~5 %, selection < 1 %. Each further model policy adds about
the same. XGBoost runs one thread per fit (`backtest.n_jobs`): two threads competing on a loaded
machine were ~18x slower.

Per step and policy the KPI table records controls against capacity, hits, hit rate, revenue
recovered, true recall (all frauds of the step, from the ground truth), the emerging scheme's
recall, the random stratum, and the fraud types whose first hit became known in the step.
"""
