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
