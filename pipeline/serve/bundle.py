"""What the registered scorer carries so that it runs without this repository.

The scorer pyfunc is logged with the project's `pipeline` package bundled beside it (MLflow's
``code_paths``: it lands on the serving process's path) and with exact pins of the packages that
serving needs: the distribution's core dependencies and its `serve` extra, at the versions
installed where the model was logged (the tested set of ``requirements-serve.lock``). Neither
training packages nor an unpublished ``customs-targeting`` requirement go with it.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "customs-targeting"
SERVE_EXTRA = "serve"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def package_folder() -> Path:
    """The `pipeline` package folder, bundled with the scorer as its code."""
    import pipeline

    return Path(pipeline.__file__).resolve().parent


def serve_requirements() -> list[str]:
    """``name==version`` for every core and `serve` requirement of the distribution, pinned to
    the installed versions (the project itself is bundled as code, never required by name)."""
    declared = metadata.requires(DISTRIBUTION) or []
    names: list[str] = []
    for requirement in declared:
        marker = requirement.partition(";")[2]
        extra = _EXTRA.search(marker)
        if extra is not None and extra.group(1) != SERVE_EXTRA:
            continue
        match = _NAME.match(requirement)
        if match is None or match.group(1).lower() == DISTRIBUTION:
            continue
        names.append(match.group(1))
    pins = []
    for name in sorted(dict.fromkeys(names), key=str.lower):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError as exc:
            raise RuntimeError(
                f"{name} (a serving requirement of {DISTRIBUTION}) is not installed: install the "
                f"`{SERVE_EXTRA}` extra before logging the scorer"
            ) from exc
    return pins
