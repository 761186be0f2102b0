"""Static plots for reports (PNG, no display needed): the grouped-bar chart the data card and the evaluation report share."""

from __future__ import annotations

from pathlib import Path


def grouped_barh(labels: list[str], series: dict[str, list[float]], path: Path, *, title: str, xlabel: str,
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
