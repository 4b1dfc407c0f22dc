"""The dashboard's charting library, uPlot, fetched from the npm registry and served locally.

Operators' networks are often closed, so the dashboard never loads anything
from a CDN: `python -m app.web.assets` (run by `make` and the Dockerfile)
downloads the pinned release once, checks its integrity hash, and keeps the
two files the dashboard needs beside this module. The files are not in git.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

UPLOT_VERSION = "1.6.32"
UPLOT_TARBALL = f"https://registry.npmjs.org/uplot/-/uplot-{UPLOT_VERSION}.tgz"
UPLOT_SHA512 = ("KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/"
                "ep3tOkyTxpiQIw==")
STATIC = Path(__file__).resolve().parent / "static"
FILES = {"package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
         "package/dist/uPlot.min.css": "uPlot.min.css"}


def installed() -> bool:
    return all((STATIC / name).exists() for name in FILES.values())


def install() -> None:
    if installed():
        return
    with urllib.request.urlopen(UPLOT_TARBALL, timeout=60) as response:
        data = response.read()
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != UPLOT_SHA512:
        raise SystemExit(f"uPlot {UPLOT_VERSION}: integrity check failed ({digest})")
    STATIC.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member, name in FILES.items():
            source = archive.extractfile(member)
            if source is None:
                raise SystemExit(f"uPlot {UPLOT_VERSION}: {member} missing from the package")
            (STATIC / name).write_bytes(source.read())


if __name__ == "__main__":
    install()
    print(f"uPlot {UPLOT_VERSION} in {STATIC}", file=sys.stderr)
