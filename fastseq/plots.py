"""Training curves and attention heatmaps, drawn with matplotlib.

Files are drawn on a ``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg``: no display
is needed and nothing global changes (pyplot's backend, its figure list, rcParams), so users'
interactive plotting keeps working. Only ``plot_loss`` without a ``path`` (the book's
``Trainer.plot()``, which shows a window) goes through pyplot and the user's backend.
Every PNG is written atomically (``fastseq._files.atomic_write``).

matplotlib is imported on first use, so ``import fastseq`` does not pay for it.
"""

import numpy as np

from ._files import atomic_write

__all__ = ["plot_loss", "plot_history", "plot_attention", "HistoryFigure"]

DPI = 100


def _file_figure(figsize, **subplot_margins):
    """A Figure drawn by Agg, independent of pyplot. Margins are fixed (``subplots_adjust``)
    rather than computed by a layout engine, which would triple the drawing time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**subplot_margins)
    return fig


def _save(fig, path):
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI)


def _draw_loss(ax, loss_list, eval_interval, ylim):
    x = np.arange(len(loss_list))
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.plot(x, loss_list, label="train")
    ax.set_xlabel(f"iterations (x{eval_interval})")
    ax.set_ylabel("loss")


def plot_loss(loss_list, eval_interval, ylim=None, path=None):
    """The book's ``Trainer.plot``: loss vs iterations (x eval_interval). Saved as a PNG to
    ``path`` if given (headless), else shown with ``pyplot.show()``. Returns the Figure."""
    if path is not None:
        fig = _file_figure((6, 4), left=0.12, right=0.96, bottom=0.13, top=0.95)
        _draw_loss(fig.add_subplot(), loss_list, eval_interval, ylim)
        _save(fig, path)
        return fig
    import matplotlib.pyplot as plt

    fig = plt.figure()
    _draw_loss(fig.add_subplot(), loss_list, eval_interval, ylim)
    plt.show()
    return fig


class HistoryFigure:
    """Loss (left) and validation accuracy (right) per epoch, kept alive between epochs: a
    training run calls ``update(...)`` then ``save(path)`` after epochs, which costs a
    redraw (about 0.1 s) instead of building the figure again.

    ``epochs``: the ``history.json`` rows (dicts with ``epoch``, ``loss``, ``val_acc`` in
    [0, 1]). With ``loss_list`` (the Trainer's: recorded at iterations 0, eval_interval, ... of
    every epoch) and ``iters_per_epoch``, the loss panel also shows the finer curve. An epoch's
    mean loss is plotted at its end (x = epoch).
    """

    def __init__(self, title=None):
        from matplotlib.ticker import MaxNLocator

        self.fig = _file_figure((10, 4), left=0.07, right=0.98, bottom=0.13, top=0.88,
                                wspace=0.22)
        self.ax_loss, self.ax_acc = self.fig.subplots(1, 2)
        ax = self.ax_loss
        self.fine_loss, = ax.plot([], [], color="tab:blue", alpha=0.35, lw=1,
                                  label="every eval_interval iterations")
        self.epoch_loss, = ax.plot([], [], "o-", color="tab:blue", label="epoch mean")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax = self.ax_acc
        self.acc, = ax.plot([], [], "o-", color="tab:green", label="validation")
        self.best, = ax.plot([], [], "*", ms=14, color="tab:orange", label="best")
        ax.set_ylim(0, 100)
        ax.set_xlabel("epoch")
        for ax in (self.ax_loss, self.ax_acc):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        if title:
            self.fig.suptitle(title)

    def update(self, epochs, loss_list=None, eval_interval=None, iters_per_epoch=None):
        ep = [row["epoch"] for row in epochs]
        if loss_list and eval_interval and iters_per_epoch:
            # The Trainer records at iterations 0, eval_interval, 2 eval_interval, ... of every
            # epoch: entry j is record k of epoch e, plotted at the fraction of training done.
            per_epoch = -(-iters_per_epoch // eval_interval)
            pos = [e + (k * eval_interval + 1) / iters_per_epoch
                   for e, k in (divmod(j, per_epoch) for j in range(len(loss_list)))]
            self.fine_loss.set_data(pos, loss_list)
            self.fine_loss.set_label(f"every {eval_interval} iterations")
        self.epoch_loss.set_data(ep, [row["loss"] for row in epochs])
        acc = [100.0 * row["val_acc"] for row in epochs]
        self.acc.set_data(ep, acc)
        if acc:
            best = int(np.argmax(acc))
            self.best.set_data([ep[best]], [acc[best]])
            self.best.set_label(f"best {acc[best]:.2f}% (epoch {ep[best]})")
        top = max([row["loss"] for row in epochs] + list(loss_list or []), default=1.0)
        if np.isfinite(top) and top > 0:
            self.ax_loss.set_ylim(0, 1.05 * top)
        for ax in (self.ax_loss, self.ax_acc):
            ax.set_xlim(0, max(ep, default=1) + 0.5)
        self.ax_loss.legend(loc="upper right")
        self.ax_acc.legend(loc="lower right")
        return self

    def save(self, path):
        _save(self.fig, path)
        return self


def plot_history(epochs, path, loss_list=None, eval_interval=None, iters_per_epoch=None,
                 title=None):
    """``HistoryFigure`` drawn once and saved as a PNG to ``path``; returns the Figure."""
    return HistoryFigure(title).update(epochs, loss_list, eval_interval,
                                       iters_per_epoch).save(path).fig


def _label(c):
    return "\u00b7" if c == " " else c  # padding spaces as a visible middle dot


def plot_attention(weights, questions, answers, path, is_reverse=False):
    """Heatmaps of attention weights, one panel per example, saved as a PNG to ``path``.

    weights (K, Ta, Tq): for each of K examples, the weights over the Tq encoder steps at each
    of the Ta decoder steps; questions: K strings of Tq characters *as the encoder read them*
    (reversed when ``is_reverse``; the panel then shows them, and the weights, un-reversed);
    answers: K strings of Ta characters, the decoder's output at each step.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 3 or len(questions) != len(weights) or len(answers) != len(weights):
        raise ValueError(f"weights must be (K, Ta, Tq) with K questions and answers, got "
                         f"{weights.shape}, {len(questions)} questions, {len(answers)} answers")
    K, Ta, Tq = weights.shape
    width, height = min(4.5 * K, 18), 0.22 * Ta + 1.3  # inches; margins below too
    fig = _file_figure((width, height), left=0.5 / width, right=1 - 0.9 / width,
                       bottom=0.75 / height, top=1 - 0.35 / height, wspace=0.3)
    axes = np.atleast_1d(fig.subplots(1, K, squeeze=False)[0])
    for ax, w, q, a in zip(axes, weights, questions, answers):
        if is_reverse:
            w, q = w[:, ::-1], q[::-1]
        image = ax.imshow(w, cmap="Greys_r", vmin=0.0, vmax=1.0, aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(Tq), [_label(c) for c in q], fontsize=7)
        ax.set_yticks(range(Ta), [_label(c) for c in a], fontsize=8)
        ax.set_xlabel("question")
        ax.set_ylabel("answer")
        ax.set_title(f"{q.strip()} \u2192 {a.strip()}", fontsize=9)
    fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.02)
    _save(fig, path)
    return fig
