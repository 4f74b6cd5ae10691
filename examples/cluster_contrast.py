"""Unsupervised MSINet: Cluster Contrast on torchreid data, without a single label.

Each epoch clusters the training images (k-reciprocal Jaccard distance + DBSCAN),
trains MSINet against a memory of the cluster centroids, and torchreid evaluates the
result. On the built-in synthetic data, on the CPU:

    python examples/cluster_contrast.py --demo

On a real dataset torchreid knows (Market-1501 in ~/datasets/market1501), on a GPU,
from the ImageNet-pretrained MSINet:

    python examples/cluster_contrast.py --root ~/datasets --dataset market1501 \\
        --pretrained --device cuda --height 256 --width 128 --batch-size 256 \\
        --num-instances 16 --epochs 50 --eps 0.6 --k1 30

Unsupervised domain adaptation (the paper's Table 4 setting): with ``--source``, MSINet is
first trained with labels on the source dataset by the paper's recipe engine, then adapted
to the unlabelled target (``--dataset``) by Cluster Contrast; the target's Rank-1 and mAP
are printed for the source-only model and after adaptation. ``--demo --source market1501``
generates a synthetic source (the ``street`` domain) and a shifted target (``campus``).
``--camera-aware`` clusters with each camera's mean feature removed: on a new domain the
source model's features group by camera before they group by person:

    python examples/cluster_contrast.py --demo --source market1501 --camera-aware

Both phases write resume checkpoints every 10 minutes (``--checkpoint-minutes``) and on
SIGTERM, SIGINT or SIGUSR1; ``--resume auto`` continues an interrupted run where it stopped.

On real datasets, Market-1501 -> MSMT17 from the ImageNet-pretrained MSINet:

    python examples/cluster_contrast.py --root ~/datasets --source market1501 \\
        --dataset msmt17 --camera-aware --pretrained --device cuda --height 256 --width 128 \\
        --batch-size 256 --num-instances 16 --source-epochs 60 --epochs 50 --k1 30
"""
import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

import msinet_reid  # noqa: F401  (registers MSINet, makes torchreid's modules importable)
from msinet_reid import distributed
from msinet_reid.data import image_data_manager, make_market1501
from msinet_reid.demo import default_root
from msinet_reid.engine import ImageMSINetEngine, add_checkpoint_flags, checkpoint_options
from msinet_reid.evaluation import evaluate, results_table
from msinet_reid.models import MSINetEncoder
from msinet_reid.unsupervised import ClusterContrastEngine
from torchreid import models, optim, utils


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add = parser.add_argument
    add('--root', type=Path, default=default_root(), help='folder of the datasets')
    add('--dataset', default='market1501', help='torchreid dataset name (the target)')
    add('--source', default=None,
        help='labelled source dataset to train on first (domain adaptation); none: from '
             'scratch or ImageNet')
    add('--source-epochs', type=int, default=12, help='supervised epochs on the source')
    add('--source-lr', type=float, default=1.5e-3, help='Adam learning rate on the source')
    add('--demo', action='store_true',
        help='generate the synthetic Market-1501 in --root first (with --source: a source '
             'in <root>/source and a shifted target domain in <root>/target)')
    add('--demo-ids', type=int, nargs=2, default=(64, 64), metavar=('TRAIN', 'TEST'),
        help='identities of the synthetic train and test splits')
    add('--demo-cameras', type=int, default=6, help='cameras of the synthetic data')
    add('--arch', default='msinet', help='msinet, msinet_vr, msinet_s or a registered genotype')
    add('--pretrained', action='store_true', help='start from the ImageNet weights')
    add('--height', type=int, default=128)
    add('--width', type=int, default=64)
    add('--epochs', type=int, default=10, help='epochs, each one clustering then training')
    add('--batch-size', type=int, default=32)
    add('--num-instances', type=int, default=4, help='images per cluster in a batch')
    add('--lr', type=float, default=3.5e-4, help='Adam learning rate')
    add('--step-size', type=int, default=20, help='epochs between x0.1 steps of the lr')
    add('--eps', type=float, default=0.6, help='DBSCAN radius on the Jaccard distance')
    add('--min-samples', type=int, default=4, help='DBSCAN core-point neighbours')
    add('--k1', type=int, default=6,
        help='k-reciprocal neighbours (about the images per identity; 30 on Market-1501)')
    add('--k2', type=int, default=6, help='neighbours for local query expansion')
    add('--temperature', type=float, default=0.05)
    add('--momentum', type=float, default=0.2, help='centroid momentum')
    add('--camera-aware', action='store_true',
        help="cluster with each camera's mean feature removed (for a new domain, whose "
             'features group by camera)')
    add('--workers', type=int, default=2)
    add('--device', default='cpu')
    add('--seed', type=int, default=0)
    add('--rerank', action='store_true', help='evaluate after k-reciprocal re-ranking')
    add('--print-freq', type=int, default=10)
    add('--log-dir', type=Path, default=None, help='default: <root>/log/cluster_contrast')
    add('--resume', help="checkpoint of Cluster Contrast to continue from; 'auto': where the "
                         'run in --log-dir stopped (the source training too), if anywhere')
    add_checkpoint_flags(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    """Train as the arguments say; return the target's Rank-1 and mAP before and after
    Cluster Contrast (``'untrained'``/``'trained'``, or ``'source-only'``/``'adapted'``
    with ``--source``)."""
    args = parse_args(argv)
    started = time.time()
    device = distributed.setup_device(args.device)  # this process's GPU under torchrun
    use_gpu = device.type == 'cuda'
    utils.set_random_seed(args.seed)
    log_dir = args.log_dir or args.root / 'log' / 'cluster_contrast'
    source_root, target_root = args.root, args.root
    if args.demo:
        if args.source:
            source_root, target_root = args.root / 'source', args.root / 'target'
        with distributed.main_process_first():  # rank 0 generates, the others reuse
            if args.source:
                make_demo_data(args, source_root, 'street', args.seed)
            make_demo_data(args, target_root, 'campus' if args.source else 'street',
                           args.seed + 1 if args.source else args.seed)
    datamanager = data_manager(args, target_root, args.dataset, use_gpu)

    before, after = 'untrained', 'trained'
    checkpoint = None
    if args.source:
        before, after = 'source-only', 'adapted'
        source = data_manager(args, source_root, args.source, use_gpu)
        checkpoint = train_on_source(args, source, log_dir / 'source', device)
    model = MSINetEncoder(args.arch, pretrained=args.pretrained or checkpoint is not None,
                          pretrained_path=checkpoint, num_features=0, norm=True).to(device)
    results = {before: evaluate(model, datamanager, device, rerank=args.rerank)[args.dataset]}

    optimizer = optim.build_optimizer(model, optim='adam', lr=args.lr, weight_decay=5e-4)
    scheduler = optim.build_lr_scheduler(optimizer, lr_scheduler='single_step',
                                         stepsize=args.step_size)
    engine = ClusterContrastEngine(
        datamanager, model, optimizer, scheduler, use_gpu=use_gpu, eps=args.eps,
        min_samples=args.min_samples, k1=args.k1, k2=args.k2,
        temperature=args.temperature, momentum=args.momentum,
        num_instances=args.num_instances, seed=args.seed, camera_aware=args.camera_aware,
    )
    start_epoch = engine.resume(args.resume, log_dir) if args.resume else 0
    engine.run(save_dir=str(log_dir), max_epoch=args.epochs, print_freq=args.print_freq,
               start_epoch=start_epoch, **checkpoint_options(args))

    results[after] = evaluate(model, datamanager, device, rerank=args.rerank)[args.dataset]
    print(results_table(results, f'{args.dataset} (target)' if args.source else args.dataset))
    print(f'Done in {time.time() - started:.0f} s; logs and checkpoints in {log_dir}')
    return results


def make_demo_data(args: argparse.Namespace, root: Path, domain: str, seed: int) -> None:
    make_market1501(root, num_train_ids=args.demo_ids[0], num_test_ids=args.demo_ids[1],
                    num_cameras=args.demo_cameras, height=args.height, width=args.width,
                    seed=seed, domain=domain)


def data_manager(args: argparse.Namespace, root: Path, dataset: str, use_gpu: bool):
    return image_data_manager(
        root=str(root), sources=dataset, height=args.height, width=args.width,
        transforms=['random_flip', 'random_crop'], batch_size_train=args.batch_size,
        batch_size_test=128, num_instances=args.num_instances,
        train_sampler='RandomIdentitySampler', workers=args.workers, use_gpu=use_gpu,
    )


def train_on_source(args: argparse.Namespace, datamanager, log_dir: Path,
                    device: torch.device) -> Path:
    """MSINet trained with labels by the paper's recipe engine; returns its checkpoint."""
    net = models.build_model(args.arch, datamanager.num_train_pids, loss='triplet',
                             pretrained=args.pretrained).to(device)
    optimizer = optim.build_optimizer(net, optim='adam', lr=args.source_lr)
    scheduler = optim.build_lr_scheduler(optimizer, lr_scheduler='cosine',
                                         max_epoch=args.source_epochs)
    engine = ImageMSINetEngine(datamanager, net, optimizer, scheduler=scheduler,
                               use_gpu=device.type == 'cuda', seed=args.seed)
    start_epoch = engine.resume('auto', log_dir) if args.resume else 0
    engine.run(save_dir=str(log_dir), max_epoch=args.source_epochs, start_epoch=start_epoch,
               print_freq=args.print_freq, **checkpoint_options(args))
    return log_dir / 'model' / f'model.pth.tar-{args.source_epochs}'


if __name__ == '__main__':
    main()
