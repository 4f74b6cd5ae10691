"""The genotype file a search writes, and its reader."""
import json
from pathlib import Path
from typing import Sequence, Union

from ..atomic import PathLike, atomic_write
from ..genotypes import Genotype, parse_genotype


def save_genotype(path: PathLike, genotype: Union[str, Sequence[str]], **info) -> Path:
    """Write a genotype (and JSON-serialisable ``info``, e.g. how it was found) to ``path``.

    The file is a JSON object ``{"genotype": [12 op names], ...info}``, written atomically.

    >>> save_genotype('log/genotype.json', 'msinet', dataset='msmt17')  # doctest: +SKIP
    """
    record = {'genotype': list(parse_genotype(genotype)), **info}
    text = json.dumps(record, indent=2) + '\n'
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def load_genotype(path: PathLike) -> Genotype:
    """Read the genotype a search wrote (``save_genotype``'s JSON, or a bare JSON list).

    >>> register_genotype('found', load_genotype('log/genotype.json'))  # doctest: +SKIP
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f'cannot read a genotype from {path}: {error}') from error
    if isinstance(record, dict):
        if 'genotype' not in record:
            raise ValueError(f'{path} holds no "genotype" entry; expected the JSON file that '
                             f'the architecture search writes')
        record = record['genotype']
    return parse_genotype(record)
