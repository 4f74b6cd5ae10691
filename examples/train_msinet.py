"""Run the paper's experiments (Table 2, Table 5) with torchreid and msinet-reid.

Named experiments set the recipe, model and datasets; any flag overrides them::

    python examples/train_msinet.py --experiment market1501_scratch --root reid-data
    python examples/train_msinet.py --experiment msmt17_pretrained --root reid-data
    python examples/train_msinet.py --experiment market1501_to_msmt17_sam --root reid-data
    python examples/train_msinet.py --experiment veri_to_vehicleid_sam --root reid-data
    python examples/train_msinet.py --experiment veri_scratch --root reid-data --epochs 120

    # on 4 GPUs with torchrun (--batch-size stays the global batch; checkpoints resume
    # with any number of processes)
    torchrun --nproc_per_node=4 examples/train_msinet.py --experiment msmt17_scratch \\
        --root reid-data --sync-bn

    # continue where the last run in the save directory stopped (resume checkpoints come
    # every 10 minutes and on SIGTERM/SIGINT/SIGUSR1), or from a given checkpoint
    python examples/train_msinet.py --experiment veri_scratch --root reid-data --resume auto
    python examples/train_msinet.py --experiment veri_scratch --root reid-data \\
        --resume log/veri_scratch/model/model.pth.tar-40

Without ``--experiment``, ``--recipe``, ``--source``, ``--target`` and ``--model`` say what
to train. Vehicles (``veri``, ``vehicleid``) train at 256x256, persons at 256x128.
"""
import argparse
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

import msinet_reid  # registers MSINet; torchreid's official module names work in both layouts
from msinet_reid import distributed
from msinet_reid.data import image_data_manager
from msinet_reid.engine import ImageMSINetEngine, add_checkpoint_flags, checkpoint_options
from msinet_reid.recipes import RECIPES, build_optimizer, get_recipe
from torchreid import models, utils

VEHICLE_DATASETS = ('veri', 'vehicleid')
VEHICLE_SIZE = (256, 256)


@dataclass(frozen=True)
class Experiment:
    recipe: str
    model: str
    source: str
    target: Optional[str] = None  # cross-domain: evaluated on this dataset instead


EXPERIMENTS = {
    'market1501_scratch': Experiment('scratch', 'msinet', 'market1501'),
    'market1501_pretrained': Experiment('pretrained', 'msinet', 'market1501'),
    'msmt17_scratch': Experiment('scratch', 'msinet', 'msmt17'),
    'msmt17_pretrained': Experiment('pretrained', 'msinet', 'msmt17'),
    'veri_scratch': Experiment('scratch', 'msinet', 'veri'),
    'veri_pretrained': Experiment('pretrained', 'msinet', 'veri'),
    'market1501_to_msmt17_sam': Experiment('cross_domain', 'msinet_sam', 'market1501',
                                           'msmt17'),
    'veri_to_vehicleid_sam': Experiment('cross_domain', 'msinet_sam', 'veri', 'vehicleid'),
}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--root', required=True, help='folder holding the datasets')
    parser.add_argument('--experiment', choices=EXPERIMENTS, help='a paper experiment')
    parser.add_argument('--recipe', choices=RECIPES, help='default: scratch')
    parser.add_argument('--model', help='registered model, e.g. msinet or msinet_sam '
                                        '(default: msinet)')
    parser.add_argument('--source', help='training dataset (default: market1501)')
    parser.add_argument('--target', help='test dataset (default: the training dataset)')
    parser.add_argument('--weights', help='local ImageNet-pretrained checkpoint')
    parser.add_argument('--epochs', type=int, help="override the recipe's 350 / 250")
    parser.add_argument('--batch-size', type=int, help='override the recipe (64)')
    parser.add_argument('--num-instances', type=int, help='images per identity in a batch')
    parser.add_argument('--lr', type=float, help='override the recipe (0.065)')
    parser.add_argument('--height', type=int)
    parser.add_argument('--width', type=int)
    parser.add_argument('--eval-freq', type=int, help='evaluate and save a checkpoint every '
                                                      'N epochs (recipe: 40)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA)')
    parser.add_argument('--sync-bn', action='store_true',
                        help='under torchrun: BatchNorm over the global batch (CUDA)')
    parser.add_argument('--workers', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--print-freq', type=int, default=20)
    parser.add_argument('--save-dir', help='checkpoints and TensorBoard logs '
                                           '(default: log/<experiment>)')
    parser.add_argument('--resume', help="checkpoint to continue training from; 'auto': the "
                                         'latest in --save-dir, if any')
    add_checkpoint_flags(parser)
    parser.add_argument('--evaluate', action='store_true',
                        help='only evaluate (the --resume checkpoint, if given)')
    parser.add_argument('--rerank', action='store_true',
                        help='evaluate after k-reciprocal re-ranking (fits MSMT17 on one '
                             'machine)')
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> Tuple[str, Experiment, dict]:
    """The run's name, what it trains and the recipe overrides the flags ask for."""
    preset = EXPERIMENTS.get(args.experiment, Experiment('scratch', 'msinet', 'market1501'))
    experiment = Experiment(args.recipe or preset.recipe, args.model or preset.model,
                            args.source or preset.source, args.target or preset.target)
    overrides = {field: getattr(args, arg) for field, arg in (
        ('max_epoch', 'epochs'), ('batch_size', 'batch_size'), ('lr', 'lr'),
        ('num_instances', 'num_instances'), ('height', 'height'), ('width', 'width'),
        ('eval_freq', 'eval_freq')) if getattr(args, arg) is not None}
    if experiment.source in VEHICLE_DATASETS:
        for field, size in zip(('height', 'width'), VEHICLE_SIZE):
            overrides.setdefault(field, size)
    name = args.experiment or f'{experiment.model}_{experiment.recipe}_{experiment.source}'
    return name, experiment, overrides


def main(argv: Optional[List[str]] = None) -> ImageMSINetEngine:
    args = parse_args(argv)
    name, experiment, overrides = resolve(args)
    recipe = get_recipe(experiment.recipe, **overrides)
    save_dir = args.save_dir or f'log/{name}'
    device = distributed.setup_device(args.device)  # under torchrun: this process's GPU
    use_gpu = device.type == 'cuda'
    utils.set_random_seed(args.seed)
    print(f'msinet-reid {msinet_reid.__version__}: {name}, {experiment}\n{recipe}')

    model_kwargs = {} if args.weights is None else {'pretrained_path': args.weights}
    with distributed.main_process_first():  # rank 0 downloads, the others then read
        datamanager = image_data_manager(
            root=args.root, sources=experiment.source,
            targets=experiment.target or experiment.source, workers=args.workers,
            use_gpu=use_gpu, **recipe.datamanager_kwargs())
        model = models.build_model(experiment.model, datamanager.num_train_pids,
                                   loss='triplet', pretrained=recipe.pretrained,
                                   **model_kwargs).to(device)
    optimizer, scheduler = build_optimizer(model, recipe)
    trainer = ImageMSINetEngine(datamanager, model, optimizer, scheduler=scheduler,
                                use_gpu=use_gpu, amp=args.amp, seed=args.seed,
                                sync_bn=args.sync_bn, **recipe.engine_kwargs())
    # Everything continues where the checkpoint stopped, mid-epoch for a resume checkpoint.
    start_epoch = trainer.resume(args.resume, save_dir) if args.resume else 0
    trainer.run(save_dir=save_dir, start_epoch=start_epoch, print_freq=args.print_freq,
                test_only=args.evaluate, rerank=args.rerank, **checkpoint_options(args),
                **recipe.run_kwargs())
    return trainer


if __name__ == '__main__':
    main()
