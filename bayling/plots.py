"""Static plots for reports (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path


def language_distribution(per_split: dict[str, dict[str, int]], path: Path, title: str) -> None:
    """Horizontal bars: conversations involving each language, one bar per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = sorted({lang for counts in per_split.values() for lang in counts})
    height = max(2.5, 0.45 * len(languages) + 1.2)
    fig, ax = plt.subplots(figsize=(7, height))
    width = 0.8 / max(1, len(per_split))
    for i, (split, counts) in enumerate(per_split.items()):
        positions = [k + i * width for k in range(len(languages))]
        ax.barh(positions, [counts.get(lang, 0) for lang in languages], height=width, label=split)
    ax.set_yticks([k + width * (len(per_split) - 1) / 2 for k in range(len(languages))])
    ax.set_yticklabels(languages)
    ax.set_xlabel("conversations")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def model_comparison(rows: list[dict], metric: str, models: list[str], path: Path, title: str) -> None:
    """Grouped horizontal bars: one group per direction, one bar per model (candidate, base, champion)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['test_set']} {r['direction']}" for r in rows]
    present = [m for m in models if any(r.get(f"{m}_{metric}") is not None for r in rows)]
    height = max(2.5, 0.5 * len(labels) * max(1, len(present)) / 2 + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    width = 0.8 / max(1, len(present))
    for i, model in enumerate(present):
        positions = [k + i * width for k in range(len(labels))]
        ax.barh(positions, [r.get(f"{model}_{metric}") or 0 for r in rows], height=width, label=model)
    ax.set_yticks([k + width * (len(present) - 1) / 2 for k in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(metric)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
