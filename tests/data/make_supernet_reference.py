"""Regenerate ``supernet_reference.json``: the parameter and buffer shapes of the authors'
search supernet, their architecture parameters and their eval-mode feature width.

Run by hand (not in CI) from a checkout of the reference implementation::

    git clone https://github.com/vimar-gu/MSINet /tmp/MSINet
    python tests/data/make_supernet_reference.py /tmp/MSINet

It builds ``reid.models.search_cnn.build_search_model`` on the CPU (the reference puts its
alphas on CUDA; here ``.cuda()`` is a no-op while the model is built) and records shapes
only, so nothing of the reference's code or weights is stored.
"""
import argparse
import json
import re
import sys
from pathlib import Path
from unittest import mock

import torch

OUT = Path(__file__).with_name('supernet_reference.json')
NUM_CLASSES = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('reference', type=Path, help='checkout of github.com/vimar-gu/MSINet')
    parser.add_argument('--out', type=Path, default=OUT)
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference))
    from reid.models.search_cnn import PRIMITIVES, build_search_model

    with mock.patch.object(torch.Tensor, 'cuda', lambda tensor, *a, **k: tensor):
        model = build_search_model(criterion=None, num_classes=NUM_CLASSES)
    with torch.no_grad():
        feature = model.eval()(torch.randn(2, 3, 64, 32))
    record = {
        'about': 'Shapes of the reference search supernet (vimar-gu/MSINet, '
                 'reid/models/search_cnn.py), written by make_supernet_reference.py.',
        'num_classes': NUM_CLASSES,
        'ops': list(PRIMITIVES),
        'state_dict': {key: list(value.shape) for key, value in model.state_dict().items()},
        'arch_parameters': [list(p.shape) for p in model.arch_parameters()],
        'feature_dim': feature.shape[1],
    }
    # One line per tensor: each shape written flat.
    text = re.sub(r'\[[\d,\s]*\]', lambda m: json.dumps(json.loads(m.group())),
                  json.dumps(record, indent=1))
    args.out.write_text(text + '\n')
    print(f'wrote {args.out}: {len(record["state_dict"])} tensors')


if __name__ == '__main__':
    main()
