"""Does the architecture search beat chance?

Runs the TCM search, then trains with one recipe, budget and set of seeds (a) the genotype
each search found, (b) MSINet's Table 1 genotype and (c) K random genotypes (default 6),
and evaluates all on the same test split (Rank-1 and mAP on L2-normalised features).
Prints a table (mean and spread over the seeds) and the found genotype's rank among the
random ones::

    python benchmarks/search_quality.py                       # synthetic Market-1501, CPU
    python benchmarks/search_quality.py --scheme tcm tcm_overlap ce_overlap   # Tables 8, 9
    python benchmarks/search_quality.py --root reid-data --dataset market1501 --device cuda \\
        --search-epochs 350 --train-epochs 350 --height 256 --width 128 --seeds 0 1 2
    python benchmarks/search_quality.py --quick               # a few minutes' check

Without ``--root`` a synthetic Market-1501 is generated in a temporary folder. The training
recipe is the paper's ``scratch`` preset scaled to ``--train-epochs``
(``msinet_reid.recipes.scaled_recipe``) with ``ImageMSINetEngine``.
"""
import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import msinet_reid  # noqa: F401  (registers the models)
from msinet_reid._torchreid import data, utils
from msinet_reid.data import make_market1501
from msinet_reid.engine import ImageMSINetEngine
from msinet_reid.evaluation import evaluate
from msinet_reid.genotypes import GENOTYPES, NUM_INTERACTIONS, Genotype
from msinet_reid.models import MSINet
from msinet_reid.recipes import build_optimizer, scaled_recipe
from msinet_reid.search import (
    SCHEMES, SEARCH_OPS, SEARCH_SPACES, MSINetSupernet, TCMSearchEngine,
    build_search_optimizers,
)

TABLE1 = 'msinet (Table 1)'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--root', help='folder holding the torchreid dataset; none: a '
                                       'synthetic Market-1501 in a temporary folder')
    parser.add_argument('--dataset', default='market1501')
    parser.add_argument('--scheme', nargs='+', default=['tcm'], choices=sorted(SCHEMES),
                        help='search schemes, each searched once and its genotype trained')
    parser.add_argument('--space', default='reference', choices=sorted(SEARCH_SPACES))
    parser.add_argument('--search-epochs', type=int, default=12)
    parser.add_argument('--train-epochs', type=int, default=12)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1],
                        help='training seeds of every genotype (the search uses the first)')
    parser.add_argument('--random', type=int, help='random genotypes (K); none: 6, 2 with --quick')
    parser.add_argument('--random-seed', type=int, default=0, help='draws the random genotypes')
    parser.add_argument('--lr', type=float, help="weights' SGD lr; none: the recipe's 0.065")
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--num-instances', type=int, default=4)
    parser.add_argument('--height', type=int, default=64)
    parser.add_argument('--width', type=int, default=32)
    parser.add_argument('--synthetic-ids', type=int, nargs=2, default=(64, 48),
                        metavar=('TRAIN', 'TEST'), help='identities of the synthetic data')
    parser.add_argument('--cameras', type=int, default=6, help='of the synthetic data')
    parser.add_argument('--images-per-camera', type=int, default=3, help='synthetic data')
    parser.add_argument('--threads', type=int, help="torch's CPU threads; none: torch's default")
    parser.add_argument('--workers', type=int, default=0)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', type=Path, help='also write the results as JSON here')
    parser.add_argument('--quick', action='store_true',
                        help='tiny settings (1 epoch each, 2 random genotypes, 1 seed)')
    args = parser.parse_args(argv)
    if args.random is None:
        args.random = 2 if args.quick else 6
    if args.quick:
        args.search_epochs = args.train_epochs = 1
        args.seeds, args.batch_size = args.seeds[:1], 8
        args.synthetic_ids, args.cameras, args.images_per_camera = (6, 4), 2, 2
        args.height, args.width = 32, 16
    return args


def random_genotypes(count: int, seed: int) -> List[Genotype]:
    """``count`` genotypes drawn uniformly from the search space (4^12 of them)."""
    rng = random.Random(seed)
    return [tuple(rng.choice(SEARCH_OPS) for _ in range(NUM_INTERACTIONS))
            for _ in range(count)]


class L2Normalised(nn.Module):
    """The model's eval-mode features, L2-normalised: the paper's evaluation protocol."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.model(x), dim=1)


def search(args, datamanager, scheme: str, save_dir: Path) -> Genotype:
    utils.set_random_seed(args.seeds[0])
    supernet = MSINetSupernet(datamanager.num_train_pids, args.space).to(args.device)
    engine = TCMSearchEngine(
        datamanager, supernet, *build_search_optimizers(supernet, args.search_epochs),
        scheme=scheme, seed=args.seeds[0], num_instances=args.num_instances,
        use_gpu=args.device.type == 'cuda')
    engine.run(save_dir=str(save_dir), max_epoch=args.search_epochs, print_freq=10 ** 6,
               eval_freq=0, ranks=[1])
    return supernet.genotype()


def train_and_evaluate(args, datamanager, genotype: Genotype, seed: int,
                       save_dir: Path) -> Dict[str, float]:
    """Train ``genotype`` from scratch with the scaled paper recipe; its test scores."""
    utils.set_random_seed(seed)
    overrides = {} if args.lr is None else {'lr': args.lr}
    recipe = scaled_recipe('scratch', args.train_epochs, eval_freq=0, **overrides)
    model = MSINet(datamanager.num_train_pids, genotype, loss='triplet').to(args.device)
    optimizer, scheduler = build_optimizer(model, recipe)
    engine = ImageMSINetEngine(datamanager, model, optimizer, scheduler=scheduler,
                               use_gpu=args.device.type == 'cuda', seed=seed,
                               **recipe.engine_kwargs())
    engine.run(save_dir=str(save_dir), print_freq=10 ** 6, ranks=[1], **recipe.run_kwargs())
    return evaluate(L2Normalised(model), datamanager, args.device)[args.dataset]


def _summary(scores: Sequence[float]) -> str:
    spread = f' ± {statistics.stdev(scores):.1%}' if len(scores) > 1 else ''
    return f'{statistics.mean(scores):.1%}{spread}'


def rank_among(found: float, others: Sequence[float]) -> int:
    """1 + how many of ``others`` score strictly higher than ``found``."""
    return 1 + sum(other > found for other in others)


def report(results: Dict[str, dict], num_random: int) -> str:
    lines = [f'{"genotype":<22}{"Rank-1":>16}{"mAP":>16}   ops',
             *(f'{name:<22}{_summary(r["rank1"]):>16}{_summary(r["mAP"]):>16}   '
               f'{" ".join(r["genotype"])}' for name, r in results.items())]
    randoms = [r for name, r in results.items() if name.startswith('random')]
    for name, r in results.items():
        if name.startswith('found') or name == TABLE1:
            ranks = [rank_among(statistics.mean(r[metric]),
                                [statistics.mean(o[metric]) for o in randoms])
                     for metric in ('mAP', 'rank1')]
            lines.append(f'{name}: rank {ranks[0]} by mAP, {ranks[1]} by Rank-1 among itself '
                         f'and the {num_random} random genotypes (1 = best)')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    args.device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        root = args.root
        if root is None:
            root = str(work / 'data')
            make_market1501(root, *args.synthetic_ids, args.images_per_camera, args.cameras,
                            height=args.height, width=args.width, progress=False)
        datamanager = data.ImageDataManager(
            root=root, sources=args.dataset, targets=args.dataset, height=args.height,
            width=args.width, transforms=list(scaled_recipe('scratch', 1).transforms),
            batch_size_train=args.batch_size, num_instances=args.num_instances,
            train_sampler='RandomIdentitySampler', workers=args.workers,
            use_gpu=args.device.type == 'cuda')
        candidates = {f'found ({scheme})': search(args, datamanager, scheme,
                                                  work / f'search_{scheme}')
                      for scheme in args.scheme}
        candidates[TABLE1] = GENOTYPES['msinet']
        candidates.update({f'random {index + 1}': genotype for index, genotype in
                           enumerate(random_genotypes(args.random, args.random_seed))})
        results = {}
        for name, genotype in candidates.items():
            scores = [train_and_evaluate(args, datamanager, genotype, seed,
                                         work / f'train_{len(results)}_{seed}')
                      for seed in args.seeds]
            results[name] = {'genotype': list(genotype),
                             'rank1': [s['rank1'] for s in scores],
                             'mAP': [s['mAP'] for s in scores]}
            print(f'=> {name}: Rank-1 {_summary(results[name]["rank1"])}, '
                  f'mAP {_summary(results[name]["mAP"])}')
    print(f'\n{args.dataset}, {args.height}x{args.width}, space {args.space!r}: search '
          f'{args.search_epochs} epochs (seed {args.seeds[0]}), training {args.train_epochs} '
          f'epochs (scaled scratch recipe), seeds {args.seeds}; L2-normalised features; '
          f'{time.time() - started:.0f} s')
    print(report(results, args.random))
    if args.out is not None:
        args.out.write_text(json.dumps({'settings': {k: str(v) for k, v in vars(args).items()},
                                        'results': results}, indent=1) + '\n')
    return results


if __name__ == '__main__':
    main()
