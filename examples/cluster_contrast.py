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
"""
import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

import msinet_reid  # noqa: F401  (registers MSINet, makes torchreid's modules importable)
from msinet_reid.data import make_market1501
from msinet_reid.demo import default_root
from msinet_reid.evaluation import evaluate
from msinet_reid.models import MSINetEncoder
from msinet_reid.unsupervised import ClusterContrastEngine
from torchreid import data, optim, utils


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add = parser.add_argument
    add('--root', type=Path, default=default_root(), help='folder of the datasets')
    add('--dataset', default='market1501', help='torchreid dataset name')
    add('--demo', action='store_true', help='generate the synthetic Market-1501 in --root first')
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
    add('--workers', type=int, default=2)
    add('--device', default='cpu')
    add('--seed', type=int, default=0)
    add('--print-freq', type=int, default=10)
    add('--log-dir', type=Path, default=None, help='default: <root>/log/cluster_contrast')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    """Train as the arguments say; return Rank-1 and mAP before and after training."""
    args = parse_args(argv)
    started = time.time()
    device = torch.device(args.device)
    use_gpu = device.type == 'cuda'
    utils.set_random_seed(args.seed)
    if args.demo:
        make_market1501(args.root, num_train_ids=args.demo_ids[0],
                        num_test_ids=args.demo_ids[1], num_cameras=args.demo_cameras,
                        height=args.height, width=args.width, seed=args.seed)
    datamanager = data.ImageDataManager(
        root=str(args.root), sources=args.dataset, height=args.height, width=args.width,
        transforms=['random_flip', 'random_crop'], batch_size_train=args.batch_size,
        batch_size_test=128, num_instances=args.num_instances,
        train_sampler='RandomIdentitySampler', workers=args.workers, use_gpu=use_gpu,
    )
    model = MSINetEncoder(args.arch, pretrained=args.pretrained, num_features=0,
                          norm=True).to(device)
    results = {'untrained': evaluate(model, datamanager, device)[args.dataset]}

    optimizer = optim.build_optimizer(model, optim='adam', lr=args.lr, weight_decay=5e-4)
    scheduler = optim.build_lr_scheduler(optimizer, lr_scheduler='single_step',
                                         stepsize=args.step_size)
    engine = ClusterContrastEngine(
        datamanager, model, optimizer, scheduler, use_gpu=use_gpu, eps=args.eps,
        min_samples=args.min_samples, k1=args.k1, k2=args.k2,
        temperature=args.temperature, momentum=args.momentum,
        num_instances=args.num_instances, seed=args.seed,
    )
    log_dir = args.log_dir or args.root / 'log' / 'cluster_contrast'
    engine.run(save_dir=str(log_dir), max_epoch=args.epochs, print_freq=args.print_freq)

    results['trained'] = evaluate(model, datamanager, device)[args.dataset]
    print(f'{"":<12}{"Rank-1":>8}{"mAP":>8}')
    for state, scores in results.items():
        print(f'{state:<12}{scores["rank1"]:>8.1%}{scores["mAP"]:>8.1%}')
    print(f'Done in {time.time() - started:.0f} s; logs and checkpoints in {log_dir}')
    return results


if __name__ == '__main__':
    main()
