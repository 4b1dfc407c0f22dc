"""The dashboard's chart library (uPlot), served by the worker from inside the package.

Operators' networks are often closed, so the dashboard loads nothing from a CDN. The
package's build (setup.py) fetches the pinned release below with npm, checks it and
puts these files beside this module; the worker only checks that they are here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# Another release: its version, `npm view uplot@<version> dist.integrity`, and the sha256sum
# of its two dist/ files below.
UPLOT_VERSION = "1.6.32"
# The integrity the registry publishes for that release's tarball.
UPLOT_INTEGRITY = ("sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGG"
                   "zQm/ep3tOkyTxpiQIw==")
STATIC = Path(__file__).resolve().parent / "static"
# Each file the dashboard loads, and the SHA-256 of its copy in the pinned release.
FILES = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}


def unverified(directory: Path = STATIC) -> list[str]:
    """The files missing from `directory` or differing from the pinned release's."""
    return [name for name, sha256 in FILES.items()
            if not (directory / name).is_file()
            or hashlib.sha256((directory / name).read_bytes()).hexdigest() != sha256]


def missing_message(names: list[str]) -> str:
    return (f"the dashboard's chart library (uPlot {UPLOT_VERSION}) is missing or altered in "
            f"{STATIC}: {', '.join(names)}. The package's build fetches it with npm: "
            "reinstall the package with npm on the PATH (`make setup` for a checkout).")
