"""customs-targeting: learn which customs declarations to control.

Importing this package creates no folder, sets no tracking URI and configures no logging. It sets
one environment default, before any OpenMP runtime is loaded (XGBoost's and LightGBM's read it
once, when they load): ``OMP_WAIT_POLICY=PASSIVE``, so threads that wait for work sleep instead of
spinning. On a machine shared with other CPU-bound processes, spinning threads made a 2-thread
XGBoost fit 9x slower (pipeline/compute.py). Set ``OMP_WAIT_POLICY`` yourself to override it.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
