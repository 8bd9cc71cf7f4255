"""A bulk run of :mod:`tests.backfill.child` on a machine whose wall clock is wrong by
``spec["skew"]`` seconds: ``time.time`` is shifted before recocora is imported."""

from __future__ import annotations

import json
import sys
import time


def main(spec: dict[str, object]) -> int:
    real, skew = time.time, float(spec.get("skew", 0.0))  # type: ignore[arg-type]
    time.time = lambda: real() + skew
    from tests.backfill.child import main as run

    return run(spec)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
