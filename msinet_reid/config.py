"""The settings of ``msinet-reid train`` as one typed config: YAML files, dot-separated
``KEY VALUE`` overrides (as torchreid's ``scripts/main.py`` takes them), and errors that
name a wrong key and the nearest valid ones before any work starts.

Example::

    >>> config = load_config('msinet.yaml', overrides=['recipe.max_epoch', '60'])
    >>> config.recipe.max_epoch
    60
"""
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

import torch
import yaml

from .recipes import EXPERIMENTS, RECIPES, Recipe, dataset_recipe


class ConfigError(ValueError):
    """A config key that does not exist, or a value of the wrong type."""


@dataclass
class ModelSettings:
    name: str = 'msinet'  # a registered model (msinet_reid.models.list_models())
    weights: Optional[str] = None  # a local ImageNet-pretrained checkpoint


@dataclass
class DataSettings:
    path: Optional[str] = None  # own data: a folder or a CSV list (msinet_reid.data.own)
    root: str = 'reid-data'  # the folder of torchreid's datasets
    source: str = 'market1501'  # the torchreid dataset trained on
    target: Optional[str] = None  # evaluated on this torchreid dataset instead
    test_ids: int = 0  # own data without query/gallery: identities held out to evaluate
    workers: int = 4


@dataclass
class RunSettings:
    device: str = field(default_factory=lambda: 'cuda' if torch.cuda.is_available() else 'cpu')
    seed: int = 0
    save_dir: Optional[str] = None  # None: log/<experiment or model_recipe_data>
    amp: bool = False
    sync_bn: bool = False
    print_freq: int = 0  # 0: once an epoch
    rerank: bool = False
    evaluate_only: bool = False  # evaluate the resume checkpoint (or the initial weights)
    resume: Optional[str] = None  # a checkpoint, or 'auto'
    checkpoint_every: int = 0
    checkpoint_minutes: float = 10.0


@dataclass
class TrainConfig:
    """Everything ``msinet-reid train`` does, in four sections; ``experiment`` names one
    of the paper's (:data:`msinet_reid.recipes.EXPERIMENTS`), which sets the defaults of
    the other sections."""

    experiment: Optional[str] = None
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    recipe: Recipe = field(default_factory=lambda: RECIPES['scratch'])
    run: RunSettings = field(default_factory=RunSettings)

    def to_dict(self) -> Dict[str, Any]:
        """Plain YAML-able values (tuples as lists)."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def default_config(experiment: Optional[str] = None, recipe: Optional[str] = None,
                   source: Optional[str] = None) -> TrainConfig:
    """The complete default config of ``experiment`` (its recipe, model and datasets), or
    of ``recipe`` alone (default ``'scratch'``), at the paper's input size for the
    training dataset ``source`` (vehicles at 256x256)."""
    if experiment is not None and experiment not in EXPERIMENTS:
        raise ConfigError(f'unknown experiment {experiment!r}{_nearest(experiment, EXPERIMENTS)}')
    if recipe is not None and recipe not in RECIPES:
        raise ConfigError(f'unknown recipe {recipe!r}{_nearest(recipe, RECIPES)}')
    config = TrainConfig(experiment=experiment)
    if experiment is not None:
        chosen = EXPERIMENTS[experiment]
        config.model.name = chosen.model
        config.data.source, config.data.target = chosen.source, chosen.target
        recipe = recipe or chosen.recipe
    config.data.source = source or config.data.source
    config.recipe = dataset_recipe(recipe or 'scratch', config.data.source)
    return config


def load_config(path: Optional[Path] = None, overrides: Sequence[str] = (),
                settings: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """The config of the YAML file ``path`` (any subset of the keys), then ``settings``
    (``{'recipe.lr': 0.01, ...}``, from command-line flags), then ``overrides``
    (``['recipe.lr', '0.01', ...]``, values read as YAML), each over the last, on the
    defaults of the experiment or recipe they choose. Raises :class:`ConfigError` naming
    any unknown key (with the nearest valid ones) or wrong type."""
    layers = [_flatten(_read_yaml(path)) if path is not None else {},
              dict(settings or {}), _pairs(overrides)]
    chosen = {}
    for layer in layers:
        chosen.update({k: v for k, v in layer.items()
                       if k in ('experiment', 'recipe.name', 'data.source')})
    config = default_config(chosen.get('experiment'), chosen.get('recipe.name'),
                            chosen.get('data.source'))
    flat = _flatten(config.to_dict())
    for layer in layers:
        for key, value in layer.items():
            if key not in flat:
                raise ConfigError(f'unknown config key {key!r}{_nearest(key, flat)}')
            flat[key] = value
    return _build(flat)


def _read_yaml(path: Path) -> dict:
    try:
        content = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f'{path} is not valid YAML: {error}') from error
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f'{path} must hold a mapping of sections (model, data, recipe, run)')
    return content


def _flatten(tree: dict, prefix: str = '') -> Dict[str, Any]:
    """``{'recipe': {'lr': 1}}`` as ``{'recipe.lr': 1}``."""
    flat = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{name}.'))
        else:
            flat[name] = value
    return flat


def _pairs(overrides: Sequence[str]) -> Dict[str, Any]:
    if len(overrides) % 2:
        raise ConfigError(f'overrides come as KEY VALUE pairs; {overrides[-1]!r} has no value')
    return {key: yaml.safe_load(value) for key, value in zip(overrides[::2], overrides[1::2])}


def _nearest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
    return f'; did you mean {" or ".join(close)}?' if close else ''


def _build(flat: Dict[str, Any]) -> TrainConfig:
    """The config of ``flat`` keys, every value checked against its field's type."""
    sections = {}
    for section in dataclasses.fields(TrainConfig):
        if section.name == 'experiment':
            continue
        cls = section.default_factory().__class__
        values = {f.name: _typed(f'{section.name}.{f.name}', flat[f'{section.name}.{f.name}'],
                                 typing.get_type_hints(cls)[f.name])
                  for f in dataclasses.fields(cls)}
        sections[section.name] = cls(**values)
    experiment = _typed('experiment', flat['experiment'], Optional[str])
    return TrainConfig(experiment=experiment, **sections)


def _typed(key: str, value: Any, kind: Any) -> Any:
    """``value`` as ``kind`` (int, float, bool, str, Optional[...], Tuple[X, ...]), or a
    :class:`ConfigError` naming ``key``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:  # Optional[X]
        return None if value is None else _typed(key, value, args[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{key} takes a list, got {value!r}')
        return tuple(_typed(key, v, args[0]) for v in value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f'{key} takes {kind.__name__}, got {value!r} '
                          f'({type(value).__name__})')
    return value


__all__ = ['ConfigError', 'DataSettings', 'ModelSettings', 'RunSettings', 'TrainConfig',
           'default_config', 'load_config']
