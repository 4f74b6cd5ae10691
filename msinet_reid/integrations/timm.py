"""MSINet in timm: every registered MSINet is a timm model.

Importing this module (``import msinet_reid`` does it when timm is installed) registers
each MSINet model with timm's registry, and every genotype registered later with
``msinet_reid.register_genotype``::

    import timm
    import msinet_reid

    model = timm.create_model('msinet', pretrained=False, num_classes=751)
    backbone = timm.create_model('msinet', features_only=True, out_indices=(2, 3))

The models are :class:`TimmMSINet`, an MSINet with timm's model interface; they keep
MSINet's modules, so state_dicts are interchangeable with the torchreid models. timm
builds them through the torchreid factories, so ``pretrained=True`` finds and loads the
authors' checkpoint exactly as ``torchreid.models.build_model`` does (``pretrained_path=``
or ``pretrained_cfg_overlay=dict(file=...)``, then ``MSINET_PRETRAINED``, then torch's hub
cache), with the same errors.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

try:
    import timm  # noqa: F401
except ModuleNotFoundError as error:
    if error.name != 'timm':
        raise
    raise ImportError(
        'the timm integration of msinet-reid needs timm: pip install "msinet-reid[timm]"'
    ) from error
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, is_model
from timm.models import register_model as register_timm_model

from .._torchreid import model_factory
from ..models import MSICell, MSINet
from ..models.msinet import TRAINING_HEADS, init_weights
from ..models.registry import observe_models
from ..weights import PretrainedWeights

INPUT_SIZE = (3, 256, 128)
PAPER = 'MSINet: Twins Contrastive Search of Multi-Scale Interaction for Object ReID'

default_cfgs: Dict[str, Any] = {}
"""timm's pretrained cfgs of the registered models, read by ``timm.models.register_model``."""


def _take_indices(count: int, indices: Optional[Union[int, Sequence[int]]]) -> List[int]:
    """timm's feature indices: all when ``None``, the last n for an int, else as given
    (negative ones count from the end)."""
    if indices is None:
        indices = count
    if isinstance(indices, int):
        if not 0 < indices <= count:
            raise ValueError(f'cannot take the last {indices} of {count} feature maps')
        return list(range(count - indices, count))
    taken = [index + count if index < 0 else index for index in indices]
    if not all(0 <= index < count for index in taken):
        raise ValueError(f'feature indices {tuple(indices)} out of range for {count} maps')
    return taken


class TimmMSINet(MSINet):
    """MSINet behind timm's model interface.

    ``forward(x)`` is ``forward_head(forward_features(x))`` in train and eval mode alike:

    - ``forward_features``: the final maps (512 channels) and the stage-2 maps that the
      part head reads (384 channels), concatenated: ``(B, 896, H/16, W/16)``;
    - ``forward_head(x, pre_logits=True)``: the 768-d ReID feature, the same as the
      torchreid model's eval-mode output (global 512-d and part 256-d features);
    - ``forward_head(x)``: the mean of the global and the part classifier's logits (each
      behind its BN neck); with ``num_classes=0`` the 768-d feature.

    ``feature_info`` lists the stem and the last map at each resolution (strides 2, 4, 8
    and 16); ``forward_intermediates`` returns them, and ``features_only=True`` builds
    on it. Arguments are MSINet's, and ``num_classes`` may be 0; ``in_chans`` must be 3.

    Example::

        >>> model = TimmMSINet(num_classes=0).eval()
        >>> model(torch.randn(2, 3, 256, 128)).shape
        torch.Size([2, 768])
    """

    def __init__(self, num_classes: int = 1000, genotype: Union[str, Sequence[str]] = 'msinet',
                 loss: str = 'softmax', in_chans: int = 3, **kwargs) -> None:
        if in_chans != 3:
            raise ValueError(f'MSINet takes RGB images (in_chans=3), got in_chans={in_chans}')
        # MSINet needs a classifier to build; a headless model drops it right after.
        super().__init__(num_classes or 1, genotype, loss=loss, **kwargs)
        self.num_classes = num_classes
        if not num_classes:
            self.reset_classifier(0)
        self.num_features = self.fc.in_features + self.f_conv.in_channels
        self.head_hidden_size = self.feature_dim
        stages = self._stage_maps()
        self.feature_info = [info for _, info in stages]
        self._stage_cells = [cell for cell, _ in stages]  # -1: the stem

    def _stage_maps(self) -> List[Tuple[int, Dict[str, Any]]]:
        """The stem's output, then the last cell before each down-sampling transition:
        ``(cell index, feature info)`` of each."""
        stages = [(-1, dict(num_chs=self.conv1.conv.out_channels, reduction=2, module='conv1'))]
        reduction = 4  # the stem's max pooling halves again
        cells = list(self.cells)
        for index, cell in enumerate(cells):
            if not isinstance(cell, MSICell):
                reduction *= 2
            elif index + 1 == len(cells) or not isinstance(cells[index + 1], MSICell):
                stages.append((index, dict(num_chs=cell.conv4a.conv.out_channels,
                                           reduction=reduction, module=f'cells.{index}')))
        return stages

    def get_classifier(self) -> Tuple[nn.Module, nn.Module]:
        """The global and the part classifier."""
        return self.classifier, self.f_classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New classifiers for ``num_classes`` classes; with 0, the head returns features.

        MSINet's pooling is part of its design (global average and upper/lower halves),
        so ``global_pool`` can only be ``'avg'``; unpooled maps come from
        ``forward_features``.
        """
        if global_pool not in (None, 'avg'):
            raise ValueError(
                f"MSINet pools its own way (global average + upper/lower halves); "
                f"global_pool={global_pool!r} is not supported. Use forward_features for "
                f"unpooled maps"
            )
        self.num_classes = num_classes
        self.classifier = _classifier(self.fc.out_features, num_classes)
        self.f_classifier = _classifier(self.f_fc.out_features, num_classes)

    def forward_intermediates(
        self, x: Tensor, indices: Optional[Union[int, Sequence[int]]] = None,
        norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> Union[List[Tensor], Tuple[Tensor, List[Tensor]]]:
        """The maps of ``feature_info`` at ``indices`` (all by default; an int takes the
        last n), and unless ``intermediates_only``, ``forward_features``' output.

        ``stop_early`` (implied by ``intermediates_only``) stops after the last map
        requested; the first output is then the map reached, as in timm's convnets.
        MSINet has no final norm, so ``norm`` changes nothing.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"MSINet's feature maps are NCHW, not {output_fmt}")
        taken_cells = {self._stage_cells[stage] for stage in _take_indices(
            len(self.feature_info), indices)}
        stop = max(taken_cells) if stop_early or intermediates_only else len(self.cells)
        x = self.conv1(x)
        intermediates = [x] if -1 in taken_cells else []
        x = self.maxpool(x)
        part = None
        for index, cell in enumerate(self.cells):
            if index > stop:
                return intermediates if intermediates_only else (x, intermediates)
            x = cell(x)
            if index == self.part_source:
                part = x
            if index in taken_cells:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return torch.cat((x, part), dim=1), intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, Sequence[int]] = 1, prune_norm: bool = False,
        prune_head: bool = True,
    ) -> List[int]:
        """Drop the cells after the last map of ``indices`` and, with ``prune_head``,
        the heads: what ``features_only=True`` keeps. Returns the indices taken."""
        take = _take_indices(len(self.feature_info), indices)
        self.cells = self.cells[:self._stage_cells[max(take)] + 1]
        if prune_head:
            for name in TRAINING_HEADS + ('f_conv',):
                setattr(self, name, None)
            self.num_classes = 0
        return take

    def forward_features(self, x: Tensor) -> Tensor:
        """The final maps and the stage-2 maps of the part head, concatenated:
        ``(B, 896, H/16, W/16)``."""
        return torch.cat(self.featuremaps(x), dim=1)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool ``forward_features``' maps into the 768-d feature, then classify it."""
        final, part = x.split((self.fc.in_features, self.f_conv.in_channels), dim=1)
        v, f_v = self.pool_features(final, part)
        if pre_logits or not self.num_classes:
            return torch.cat((v, f_v), dim=1)
        global_logits, part_logits = self.logits(v, f_v)
        return (global_logits + part_logits) / 2

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _classifier(in_features: int, num_classes: int) -> nn.Module:
    if not num_classes:
        return nn.Identity()
    linear = nn.Linear(in_features, num_classes)
    init_weights(linear)
    return linear


def _pretrained_cfg(weights: Optional[PretrainedWeights]) -> Dict[str, Any]:
    """timm's pretrained cfg: ReID input (256x128 persons, resized without a crop) and,
    where published, the authors' ImageNet weights with their 1000-class classifiers."""
    cfg = dict(
        num_classes=1000, input_size=INPUT_SIZE,
        pool_size=tuple(side // 16 for side in INPUT_SIZE[1:]), crop_pct=1.0,
        interpolation='bilinear', mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        first_conv='conv1.conv', classifier=('classifier', 'f_classifier'),
        paper_ids='arXiv:2303.07065', paper_name=PAPER,
        origin_url='https://github.com/vimar-gu/MSINet',
    )
    if weights is not None:
        cfg.update(url=weights.url, description=weights.description,
                   notes=(f'{weights.filename}: found and loaded by msinet_reid.weights',))
    return cfg


def _create(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build the registered MSINet ``name`` the timm way, through its torchreid factory.

    The factory finds and loads the weights; timm's own loader stays off.
    ``pretrained_cfg_overlay=dict(file=...)`` names a local checkpoint, as in timm.
    """
    overlay = kwargs.get('pretrained_cfg_overlay') or {}
    pretrained_path = kwargs.pop('pretrained_path', None) or overlay.get('file')
    factory = model_factory()[name]

    def build(num_classes: int, **model_kwargs) -> TimmMSINet:
        return factory(num_classes, pretrained=pretrained, pretrained_path=pretrained_path,
                       model_cls=TimmMSINet, **model_kwargs)

    feature_cfg = dict(feature_cls='getter', out_indices=(0, 1, 2, 3))
    return build_model_with_cfg(build, name, pretrained=False, feature_cfg=feature_cfg,
                                **kwargs)


def _register(name: str, weights: Optional[PretrainedWeights]) -> None:
    """Register the MSINet model ``name`` with timm (observer of msinet_reid's registry)."""
    if is_model(name):
        raise ValueError(f'timm already has a model named {name!r}; register under another name')
    if name in globals():
        raise ValueError(f'{name!r} is taken in {__name__}; register under another name')

    def entrypoint(pretrained: bool = False, **kwargs) -> nn.Module:
        return _create(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = (f'MSINet {name!r} for timm; takes timm.create_model\'s arguments '
                          f'(num_classes, features_only, out_indices, ...).')
    default_cfgs.update(generate_default_cfgs({name: _pretrained_cfg(weights)}))
    globals()[name] = entrypoint  # timm's model modules hold their entrypoints
    register_timm_model(entrypoint)


__all__ = ['TimmMSINet', 'default_cfgs']  # timm's register_model appends each model's name

observe_models(_register)
