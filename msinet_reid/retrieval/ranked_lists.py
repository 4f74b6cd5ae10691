"""Pictures of ranked lists: each query beside its top-ranked gallery images, framed green
where the gallery image shows the query's identity and red where it does not, as
torchreid's ``visrank`` draws them, from the ranks :func:`rank_metrics` keeps
(``topk=``) instead of a whole distance matrix."""
from pathlib import Path
from typing import List, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import PathLike, atomic_write
from ..data.images import read_rgb

MATCH_COLOUR, OTHER_COLOUR, QUERY_COLOUR = (0, 170, 0), (210, 0, 0), (40, 40, 40)


def draw_ranked_lists(query_paths: Sequence[PathLike], gallery_paths: Sequence[PathLike],
                      ranked: np.ndarray, q_pids: Sequence[int], g_pids: Sequence[int],
                      folder: PathLike, height: int = 128, width: int = 64,
                      border: int = 4, gap: int = 12) -> List[Path]:
    """One PNG per query in ``folder``, named after the query's file: the query (dark
    frame), then the gallery images of its row of ``ranked`` (indices into the gallery,
    best first), each framed green (its identity) or red (another).

    Example::

        >>> scores = rank_metrics(qf, gf, q_pids, g_pids, q_camids, g_camids, topk=10)
        >>> draw_ranked_lists(query_paths, gallery_paths, scores['ranked'], q_pids, g_pids,
        ...                   'visrank')
    """
    folder = Path(folder)
    cell = (width + 2 * border, height + 2 * border)
    written = []
    for query, row, pid in zip(query_paths, np.asarray(ranked), q_pids):
        canvas = Image.new('RGB', (cell[0] * (len(row) + 1) + gap, cell[1]), 'white')
        _framed(canvas, query, 0, QUERY_COLOUR, cell, border)
        for slot, index in enumerate(row, start=1):
            colour = MATCH_COLOUR if g_pids[index] == pid else OTHER_COLOUR
            _framed(canvas, gallery_paths[index], slot * cell[0] + gap, colour, cell, border)
        path = folder / f'{Path(query).stem}.png'
        written.append(atomic_write(path, lambda tmp: canvas.save(tmp, format='PNG')))
    return written


def _framed(canvas: Image.Image, path: PathLike, left: int, colour, cell, border) -> None:
    ImageDraw.Draw(canvas).rectangle((left, 0, left + cell[0] - 1, cell[1] - 1), fill=colour)
    image = read_rgb(path).resize((cell[0] - 2 * border, cell[1] - 2 * border))
    canvas.paste(image, (left + border, border))
