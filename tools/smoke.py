"""Smoke run: the whole pipeline on the smoke profile (tiny random Llama, a few dozen rows, a few steps),
in a temporary copy of the repository, so the working tree and its DVC cache are left alone.

    python -m tools.smoke [--keep] [--dest DIR]

The copy holds the files git tracks or would track, gets params.yaml merged with profiles/smoke.yaml,
and becomes its own git repository. MLflow goes to MLFLOW_TRACKING_URI when set, otherwise to the
copy's own sqlite file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bayling.config.loader import parse_yaml, read_params_file
from bayling.config.overrides import merge
from flows.runtime.exits import DONE

ROOT = Path(__file__).resolve().parent.parent  # the checkout this tool belongs to, whatever the working directory


def pipeline_outputs(root: Path) -> list[str]:
    """Every out, metric and plot path in dvc.yaml: this checkout's results, which the copy must not inherit."""
    stages = (yaml.safe_load((root / "dvc.yaml").read_text("utf-8")) or {}).get("stages", {})
    paths = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                path = entry if isinstance(entry, str) else next(iter(entry))
                if "${" not in path:
                    paths.append(path.rstrip("/"))
    return paths


def project_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode()
    outputs = pipeline_outputs(root)
    # dvc.lock records this checkout's results, not the smoke profile's; the copy starts without one.
    return [f for f in out.split("\0") if f and f != "dvc.lock" and (root / f).is_file()
            and not any(f == o or f.startswith(o + "/") for o in outputs)]


def make_copy(root: Path, dest: Path, profile: Path) -> None:
    for rel in project_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    params, _ = read_params_file(root / "params.yaml")
    overrides = parse_yaml(profile.read_text("utf-8"), profile)
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides), sort_keys=False, allow_unicode=True), "utf-8")
    git = ["git", "-c", "user.name=smoke", "-c", "user.email=smoke@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "smoke copy"], cwd=dest, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and print its path")
    parser.add_argument("--dest", type=Path, help="make the copy here instead of a new temporary directory")
    parser.add_argument("--profile", type=Path, default=ROOT / "profiles" / "smoke.yaml")
    args = parser.parse_args(argv)
    dest = args.dest or Path(tempfile.mkdtemp(prefix="bayling-smoke-"))
    started = time.perf_counter()
    make_copy(ROOT, dest, args.profile)
    env = dict(os.environ, BAYLING_ROOT=str(dest))
    try:
        returncode = subprocess.run([sys.executable, "-m", "flows.retrain"], cwd=dest, env=env).returncode
    finally:
        if args.keep or args.dest:
            print(f"smoke copy kept at {dest}")
        else:
            shutil.rmtree(dest, ignore_errors=True)
    print(f"smoke run {'passed' if returncode == DONE else 'FAILED'} in {time.perf_counter() - started:.0f}s")
    return returncode


if __name__ == "__main__":
    sys.exit(main())
