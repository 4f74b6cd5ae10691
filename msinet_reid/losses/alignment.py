"""Spatial alignment loss of the Spatial Alignment Module (paper sec. 3.3, eq. 7 and 8).

For every ordered pair ``(i, j)`` of a batch, "Mutual Conv" correlates each position ``s``
of sample ``j`` with every position ``t`` of sample ``i`` and keeps the best match
(eq. 7)::

    A[i, j, s] = max_t  x_i[:, t] . x_j[:, s]

Eq. 8 then aligns these activation vectors with cosine similarity: for anchor ``i``, each
positive ``A[i, p]`` (``p = i`` included) with the anchor's learned self-activation (PAM),
and all negatives ``A[i, n1]``, ``A[i, n2]`` (every ordered pair, ``n1 = n2`` included)
with each other. Both terms are means of ``1 - cosine`` over the pairs they count, as in
the authors' implementation.

The authors' code materialises the ``B x B x HW x HW`` correlation tensor (268 MB at batch
64 for 16 x 8 maps). Here it is built a few anchors at a time and reduced to its maximum at
once, so only ``B x B x HW`` values (and the max indices autograd keeps) outlive a chunk.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SAM_MODES = ('pos', 'neg', 'pos_neg')

# Largest correlation block built at once: 4 Mi floats = 16 MiB in float32.
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def mutual_correlation(maps: Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tensor:
    """Eq. 7: ``(B, C, H, W)`` feature maps -> ``(B, B, H*W)`` activations ``A[i, j, s]``.

    Anchors are processed in chunks of as many as fit in ``chunk_elements`` correlation
    values (at least one anchor).

    Example::

        >>> mutual_correlation(torch.rand(4, 512, 16, 8)).shape
        torch.Size([4, 4, 128])
    """
    batch, channels = maps.shape[:2]
    x = maps.flatten(2)
    positions = x.shape[2]
    partner_cols = x.transpose(0, 1).reshape(channels, batch * positions)  # C x (j, s)
    anchor_rows = partner_cols.t()  # (i, t) x C: the same copy, transposed
    per_anchor = batch * positions * positions
    chunk = max(1, chunk_elements // per_anchor)
    blocks = []
    for start in range(0, batch, chunk):
        rows = anchor_rows[start * positions:(start + chunk) * positions]
        scores = (rows @ partner_cols).view(-1, positions, batch, positions)
        # max(dim) keeps only the argmax for backward, not the scores block.
        blocks.append(scores.max(dim=1).values)
    return torch.cat(blocks)


class SpatialAlignLoss(nn.Module):
    """Spatial alignment loss (eq. 8) in mode ``'pos'``, ``'neg'`` or ``'pos_neg'``.

    ``'pos_neg'`` with the PAM self-activation is the paper's default ("PAM-Self",
    Table 5). Pairs that a batch lacks count for nothing: a batch of one identity has no
    negative term, so the loss stays finite. With every identity equally represented in
    the batch (torchreid's ``RandomIdentitySampler``) the value equals the authors'.

    Args:
        mode: which pairs to align.
        chunk_elements: memory bound of :func:`mutual_correlation`.

    Example::

        >>> model = torchreid.models.build_model('msinet_sam', 751, loss='triplet',
        ...                                      pretrained=False)
        >>> maps = model(images, return_featuremaps=True)
        >>> loss = SpatialAlignLoss('pos_neg')(maps, model.align_module(maps), pids)
    """

    def __init__(self, mode: str = 'pos_neg',
                 chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        super().__init__()
        if mode not in SAM_MODES:
            raise ValueError(f'unknown SAM mode {mode!r}; choose one of {", ".join(SAM_MODES)}')
        self.mode = mode
        self.chunk_elements = chunk_elements

    @property
    def uses_self_activation(self) -> bool:
        """Whether the loss reads the PAM self-activation (the positive term does)."""
        return self.mode in ('pos', 'pos_neg')

    def forward(self, maps: Tensor, self_activation: Optional[Tensor], labels: Tensor) -> Tensor:
        """``maps``: ``(B, C, H, W)``; ``self_activation``: ``(B, H*W)`` from the model's
        ``align_module`` (needed by the positive term only); ``labels``: ``(B,)``."""
        if maps.dim() != 4 or labels.shape != maps.shape[:1]:
            raise ValueError(f'expected (B, C, H, W) feature maps and B labels, got maps of '
                             f'shape {tuple(maps.shape)} and labels of shape {tuple(labels.shape)}')
        activation = F.normalize(mutual_correlation(maps, self.chunk_elements), dim=2)
        same = labels[:, None] == labels[None, :]
        loss = activation.new_zeros(())
        if self.uses_self_activation:
            if self_activation is None:
                raise ValueError(f'SAM mode {self.mode!r} aligns positives to the learned '
                                 'self-activation; pass model.align_module(maps)')
            target = F.normalize(self_activation, dim=1)
            cosine = torch.einsum('in,ijn->ij', target, activation)
            loss = loss + (1 - cosine[same]).mean()  # never empty: i is its own positive
        if self.mode in ('neg', 'pos_neg'):
            negative = (~same).to(activation.dtype)
            # sum over n1, n2 of cos(A[i,n1], A[i,n2]) = |sum over n of A[i,n] / |A[i,n]| |^2
            summed = torch.einsum('ij,ijn->in', negative, activation)
            pairs = negative.sum(1).pow(2).sum()
            if pairs > 0:
                loss = loss + 1 - summed.pow(2).sum() / pairs
        return loss
