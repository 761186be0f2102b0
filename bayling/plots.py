"""Static plots for reports (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path


def _grouped_barh(labels: list[str], series: dict[str, list[float]], path: Path, *, title: str, xlabel: str,
                  size: tuple[float, float], label_fontsize: float | None = None) -> None:
    """Horizontal bars, one group per label and one bar per series, legend outside on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.barh([k + i * width for k in range(len(labels))], values, height=width, label=name)
    ax.set_yticks([k + width * (len(series) - 1) / 2 for k in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=label_fontsize)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def language_distribution(per_split: dict[str, dict[str, int]], path: Path, title: str) -> None:
    """Horizontal bars: conversations involving each language, one bar per split."""
    languages = sorted({lang for counts in per_split.values() for lang in counts})
    series = {split: [counts.get(lang, 0) for lang in languages] for split, counts in per_split.items()}
    _grouped_barh(languages, series, path, title=title, xlabel="conversations",
                  size=(7, max(2.5, 0.45 * len(languages) + 1.2)))


def model_comparison(rows: list[dict], metric: str, models: list[str], path: Path, title: str) -> None:
    """Grouped horizontal bars: one group per direction, one bar per model (candidate, base, champion)."""
    labels = [f"{r['test_set']} {r['direction']}" for r in rows]
    present = [m for m in models if any(r.get(f"{m}_{metric}") is not None for r in rows)]
    series = {model: [r.get(f"{model}_{metric}") or 0 for r in rows] for model in present}
    _grouped_barh(labels, series, path, title=title, xlabel=metric, label_fontsize=8,
                  size=(8, max(2.5, 0.5 * len(labels) * max(1, len(present)) / 2 + 1.2)))
