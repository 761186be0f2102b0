"""Apply a profile to this checkout: `python -m tools.profile profiles/bayling3-llama3-8b.yaml`.

Merges the profile over params.yaml (mappings merge, everything else replaces, as `make smoke` merges
profiles/smoke.yaml into its copy), validates every section of the result, and only then writes
params.yaml, keeping the comments of the keys the profile does not change. `--check` validates
without writing. Review the diff and commit it: DVC and MLflow record params.yaml as committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bayling.config.loader import PARAMS_FILE, parse_yaml, read_params_file, validate_sections
from bayling.config.overrides import edit_params_text, merge, profile_changes
from bayling.config.yaml_text import write_params_text
from bayling.core.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]


def merged_params(params_file: Path, profile: Path) -> dict[str, Any]:
    """params.yaml with the profile merged over it, every section validated (PipelineError lists the problems)."""
    from bayling.config.loader import SECTION_SCHEMAS

    base, _ = read_params_file(params_file)
    text = profile.read_text("utf-8")
    overrides = parse_yaml(text, profile)
    if not isinstance(overrides, dict):
        raise PipelineError(f"{profile}: a profile is a mapping of params.yaml sections")
    data = merge(base, overrides)
    # problems are reported at the profile's lines: params.yaml alone is valid, so they come from what the profile changed
    validate_sections(data, list(SECTION_SCHEMAS), text=text, file=str(profile), root=params_file.parent)
    return data


def write_merged(params_file: Path, profile: Path) -> None:
    """Write the profile's values into params.yaml where they stand, every other byte as it was (comments, `null`)."""
    merged_params(params_file, profile)  # refuse before touching the file
    base, text = read_params_file(params_file)
    changes = profile_changes(base, parse_yaml(profile.read_text("utf-8"), profile))
    write_params_text(params_file, edit_params_text(text, changes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--params", type=Path, default=ROOT / PARAMS_FILE)
    parser.add_argument("--check", action="store_true", help="validate the merged params without writing them")
    args = parser.parse_args(argv)
    try:
        if args.check:
            merged_params(args.params, args.profile)
            print(f"{args.profile} merged over {args.params}: valid")
        else:
            write_merged(args.params, args.profile)
            print(f"{args.params} now holds {args.profile}; review `git diff params.yaml`, then plan: python -m stages.train --plan")
    except (PipelineError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
