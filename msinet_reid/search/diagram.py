"""Pictures of genotypes, as the paper's Fig. 2 lays MSINet out: three stages of two cells,
each cell with two interaction modules, and for each module the four candidate
operations with the chosen one filled; and how a search's genotype changed, epoch by
epoch.

Drawing needs matplotlib: ``pip install "msinet-reid[plots]"``.
"""
from pathlib import Path
from typing import Optional, Sequence, Union

from ..atomic import PathLike, atomic_write
from ..genotypes import NUM_INTERACTIONS, Genotype, parse_genotype
from .mixed import SEARCH_OPS

# The operations as the paper names them (sec. 3.1), in the order they are drawn.
OPERATION_NAMES = {'none': 'None', 'exc': 'Exchange', 'ag': 'Channel gate',
                   'cross_att': 'Cross attention'}
DRAWN = tuple(OPERATION_NAMES)
COLOURS = {'none': '#bdbdbd', 'exc': '#6baed6', 'ag': '#74c476', 'cross_att': '#fd8d3c'}
STAGES, CELLS_PER_STAGE, MODULES_PER_CELL = 3, 2, 2


def new_figure(**options):
    """A matplotlib ``Figure`` made without pyplot: no backend is chosen or switched, so
    the process's own matplotlib settings stay as they are."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError('drawing needs matplotlib: pip install "msinet-reid[plots]" '
                          '(or pip install matplotlib)') from error
    return Figure(**options)


def genotype_figure(genotype: Union[str, Sequence[str]],
                    weights: Optional[Sequence[Sequence[float]]] = None,
                    ops: Sequence[str] = SEARCH_OPS, title: str = ''):
    """A matplotlib ``Figure`` of ``genotype`` (a name or 12 operations).

    ``weights`` (12 x 4, columns in the order of ``ops``), e.g. the search's
    ``softmax(alpha)``, are written beside each candidate. Each chosen operation's box has
    the gid ``chosen-<module>`` and the operation as its label, which is how the tests
    read the picture back.

    Example::

        >>> figure = genotype_figure('msinet', title='MSINet (Table 1)')
        >>> figure.savefig('msinet.png')
    """
    chosen = parse_genotype(genotype)
    figure = new_figure(figsize=(12, 4.2))
    from matplotlib.patches import FancyBboxPatch, Rectangle

    for stage, ax in enumerate(figure.subplots(1, STAGES, squeeze=False)[0]):
        ax.set_xlim(0, CELLS_PER_STAGE)
        ax.set_ylim(-0.2, len(DRAWN) * MODULES_PER_CELL * 0.5 + 0.9)
        ax.axis('off')
        ax.set_title(f'stage {stage + 1}', fontsize=11)
        for cell in range(CELLS_PER_STAGE):
            index = stage * CELLS_PER_STAGE + cell
            ax.add_patch(FancyBboxPatch((cell + 0.05, 0), 0.9, 4.6, boxstyle='round,pad=0.02',
                                        facecolor='white', edgecolor='#444444'))
            ax.text(cell + 0.5, 4.72, f'cell {index + 1}', ha='center', fontsize=9)
            for module in range(MODULES_PER_CELL):
                position = index * MODULES_PER_CELL + module
                top = 4.35 - module * 2.25
                ax.text(cell + 0.5, top, f'interaction {position + 1}', ha='center',
                        fontsize=8, color='#444444')
                for row, op in enumerate(DRAWN):
                    y = top - 0.45 - row * 0.45
                    picked = op == chosen[position]
                    box = Rectangle((cell + 0.12, y - 0.17), 0.76, 0.36,
                                    facecolor=COLOURS[op] if picked else 'white',
                                    edgecolor=COLOURS[op], linewidth=2 if picked else 1,
                                    gid=f'chosen-{position}' if picked else None,
                                    label=op if picked else None)
                    ax.add_patch(box)
                    label = OPERATION_NAMES[op]
                    if weights is not None:
                        label += f' {weights[position][list(ops).index(op)]:.2f}'
                    ax.text(cell + 0.5, y, label, ha='center', va='center', fontsize=7.5,
                            fontweight='bold' if picked else 'normal')
    figure.suptitle(title or ' '.join(chosen), fontsize=10)
    figure.tight_layout()
    return figure


def history_figure(history: Sequence[Sequence[str]], title: str = ''):
    """A matplotlib ``Figure`` of how a search's genotype changed: one column per epoch,
    one row per interaction module, coloured by the operation chosen."""
    import numpy as np

    figure = new_figure(figsize=(max(6, 0.25 * len(history) + 3), 4))
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    codes = np.array([[DRAWN.index(op) for op in parse_genotype(genotype)]
                      for genotype in history]).T  # (12, epochs)
    ax = figure.subplots()
    ax.imshow(codes, aspect='auto', interpolation='nearest', vmin=0, vmax=len(DRAWN) - 1,
              cmap=ListedColormap([COLOURS[op] for op in DRAWN]),
              extent=(0.5, len(history) + 0.5, NUM_INTERACTIONS + 0.5, 0.5))
    ax.set_xlabel('epoch')
    ax.set_ylabel('interaction module')
    ax.set_yticks(range(1, NUM_INTERACTIONS + 1))
    ax.legend(handles=[Patch(color=COLOURS[op], label=OPERATION_NAMES[op])
                       for op in DRAWN], loc='upper left', bbox_to_anchor=(1.01, 1))
    ax.set_title(title or 'the genotype, epoch by epoch', fontsize=10)
    figure.tight_layout()
    return figure


def save_figure(figure, path: PathLike) -> Path:
    """Write ``figure`` as a PNG at ``path``, atomically."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format='png', dpi=110))


def draw_genotype(genotype: Union[str, Genotype], path: PathLike,
                  weights: Optional[Sequence[Sequence[float]]] = None,
                  ops: Sequence[str] = SEARCH_OPS, title: str = '') -> Path:
    """Write the picture of :func:`genotype_figure` to ``path`` (PNG).

    Example::

        >>> draw_genotype('msinet', 'msinet.png')
    """
    return save_figure(genotype_figure(genotype, weights, ops, title), path)
