"""Serve the retrain flow on its weekly schedule from this process (no work pool needed).

    python -m flows.serve [--cron "0 3 * * 1"]

Needs a Prefect server (PREFECT_API_URL), e.g. `prefect server start` on the same machine.
`prefect.yaml` describes the same deployment for a work pool.
"""

from __future__ import annotations

import argparse

from flows.retrain import retrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cron", default="0 3 * * 1")
    args = parser.parse_args()
    # one run at a time, as prefect.yaml's concurrency_limit: runs beyond it wait
    retrain.serve(name="retrain", cron=args.cron, parameters={"force": False, "overrides": {}}, tags=["bayling", "retrain"],
                  global_limit=1)


if __name__ == "__main__":
    main()
