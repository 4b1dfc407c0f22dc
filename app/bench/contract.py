"""What every benchmarked implementation is given: its command line and the configuration.

    python -m app.bench.<implementation> --bootstrap B --prefix P --group G --output T \
        --state-dir D --config FILE --partitions N

It reads `P`clicks and `P`orders from the start as consumer group G, keeps
its state under D, writes one attribution per order (keyed by order id) to
T, and runs until SIGTERM. FILE holds the run's configuration, one JSON
`[topic, key, value]` per line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    for name in ("--bootstrap", "--prefix", "--group", "--output", "--state-dir", "--config"):
        parser.add_argument(name, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    return parser.parse_args()


def load_configuration(path: str) -> list[tuple[str, str, dict]]:
    return [tuple(orjson.loads(line)) for line in Path(path).read_bytes().splitlines() if line]
