"""Model cards: what a trained checkpoint is, written beside it.

``<save_dir>/model_card.json`` (and ``MODEL_CARD.md`` for people) records the model and
its genotype, the input size, the complete resolved config, the data (splits and a digest
of the image list), the metrics, the environment, the wall time and epochs, and the
sha256 of the weights file. Commands that load a checkpoint read the card beside it for
the model name and input size, and warn when the weights are not the ones it describes.
"""
import hashlib
import importlib.metadata
import json
import platform
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from .atomic import PathLike, atomic_write

CARD_FILE, CARD_PAGE = 'model_card.json', 'MODEL_CARD.md'
CARD_FORMAT = 1


def sha256(path: PathLike) -> str:
    """The sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(2 ** 20), b''):
            digest.update(block)
    return digest.hexdigest()


def environment(device: torch.device) -> Dict[str, str]:
    """The versions and device a model was trained with."""
    from . import __version__

    try:
        torchreid = importlib.metadata.version('torchreid')
    except importlib.metadata.PackageNotFoundError:  # a source tree on the path
        torchreid = 'unknown'
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()
    return {'python': platform.python_version(), 'torch': torch.__version__,
            'torchreid': torchreid, 'msinet_reid': __version__,
            'device': f'{device.type}: {name or platform.machine()}'}


def write_model_card(save_dir: PathLike, card: Dict[str, Any]) -> Path:
    """Write ``card`` as ``<save_dir>/model_card.json`` and ``MODEL_CARD.md``, atomically;
    return the JSON's path.

    Example::

        >>> write_model_card('log/market', {'model': {...}, 'weights': {...}, ...})
    """
    save_dir = Path(save_dir)
    card = {'format': CARD_FORMAT, **card}
    path = atomic_write(save_dir / CARD_FILE,
                        lambda tmp: tmp.write_text(json.dumps(card, indent=2) + '\n'))
    atomic_write(save_dir / CARD_PAGE, lambda tmp: tmp.write_text(card_page(card)))
    return path


def card_page(card: Dict[str, Any]) -> str:
    """The Markdown summary of ``card``."""
    model, data, metrics = card['model'], card['data'], card.get('metrics') or {}
    lines = [f'# {model["name"]}', '',
             f'Input {model["input_size"][0]}x{model["input_size"][1]}, '
             f'{model["feature_dim"]}-d features; genotype `{" ".join(model["genotype"])}`.', '',
             f'Trained on {data["name"]}: ' + ', '.join(
                 f'{split} {s["identities"]} identities / {s["images"]} images / '
                 f'{s["cameras"]} cameras' for split, s in data['splits'].items()) + '.', '']
    if metrics:
        lines += ['| Evaluation | Rank-1 | mAP | mINP |', '|---|---|---|---|']
        for name, scores in metrics.items():
            lines.append(f'| {name} | {scores["rank1"]:.1%} | {scores["mAP"]:.1%} | '
                         f'{scores["mINP"]:.1%} |')
        lines.append('')
    training, env = card['training'], card['environment']
    lines += [f'{training["epochs"]} epochs in {training["wall_time_s"] / 3600:.2f} h on '
              f'{env["device"]}; Python {env["python"]}, torch {env["torch"]}, torchreid '
              f'{env["torchreid"]}, msinet-reid {env["msinet_reid"]}.', '',
              f'Weights: `{card["weights"]["file"]}`, sha256 `{card["weights"]["sha256"]}`. '
              f'The complete config is in {CARD_FILE}.', '']
    return '\n'.join(lines)


def find_card(checkpoint: PathLike) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """The card describing ``checkpoint`` (in its folder or the two above it, as
    ``<save_dir>/model/model.pth.tar-N`` has it) and its content, or ``None``."""
    checkpoint = Path(checkpoint).resolve()
    for folder in list(checkpoint.parents)[:3]:
        path = folder / CARD_FILE
        if path.is_file():
            return path, json.loads(path.read_text())
    return None


def card_settings(checkpoint: PathLike) -> Optional[Dict[str, Any]]:
    """The model name and input size that the card beside ``checkpoint`` records
    (``{'model': name, 'height': h, 'width': w}``), or ``None`` without a card. Warns
    when the checkpoint is not the weights file the card describes (another sha256).

    Example::

        >>> card_settings('log/market/model/model.pth.tar-60')
        {'model': 'msinet', 'height': 256, 'width': 128}
    """
    found = find_card(checkpoint)
    if found is None:
        return None
    path, card = found
    if sha256(checkpoint) != card['weights']['sha256']:
        warnings.warn(f'{checkpoint} is not the weights file {path} describes (its sha256 '
                      f'differs from the card\'s {card["weights"]["file"]}); the card\'s '
                      f'model and input size are used, its metrics do not apply',
                      stacklevel=2)
    height, width = card['model']['input_size']
    return {'model': card['model']['name'], 'height': height, 'width': width}


__all__ = ['CARD_FILE', 'CARD_PAGE', 'card_page', 'card_settings', 'environment', 'find_card',
           'sha256', 'write_model_card']
