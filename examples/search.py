"""Search MSINet's interactions with the Twins Contrastive Mechanism, then train the result.

The defaults are the paper's (sec. 4.2, supplementary sec. 8): 350 epochs, SGD lr 0.025
with 10 warm-up epochs, Adam lr 0.002 on alpha, decays at 150/225/300, batches of 64 =
16 identities x 4 images, random flip/crop/erasing, train/valid identity ratios 60%-80%.

    # MSMT17 (the paper's MSINet), VeRi-776 (MSINet-VR), Market-1501
    python examples/search.py --root ~/datasets --dataset msmt17 --device cuda
    python examples/search.py --root ~/datasets --dataset veri --device cuda
    # Table 9 / Fig. 5(a) variants
    python examples/search.py --root ~/datasets --ratios 50 50
    python examples/search.py --root ~/datasets --scheme ce_overlap
    # continue an interrupted search where it stopped (or from a given checkpoint)
    python examples/search.py --root ~/datasets --resume auto
    python examples/search.py --root ~/datasets --resume log/search/msmt17/search_checkpoint.pth

    # on 4 GPUs (the batch of 64 is split over the processes)
    torchrun --nproc_per_node=4 examples/search.py --root ~/datasets --dataset msmt17

The genotype lands in ``<save-dir>/genotype.json``; ``--train-epochs N`` then trains it
with the paper's recipe (``ImageMSINetEngine``, the ``scratch`` preset scaled to N epochs).
VeRi-776 needs the ``veri`` torchreid dataset that msinet_reid registers on import.
"""
import argparse
from pathlib import Path
from typing import List, Optional

import torch

import msinet_reid  # registers MSINet; torchreid's official module names work in both layouts
from msinet_reid import distributed
from msinet_reid.data import image_data_manager
from msinet_reid.engine import ImageMSINetEngine, add_checkpoint_flags, checkpoint_options
from msinet_reid.optim import PAPER_EPOCHS
from msinet_reid.recipes import build_optimizer, scaled_recipe
from msinet_reid.search import (
    SCHEMES, SEARCH_SPACES, MSINetSupernet, TCMSearchEngine, build_search_optimizers,
    load_genotype,
)
from msinet_reid.search.engine import GENOTYPE_FILE
from torchreid import models, utils

# Paper sec. 4.2: persons at 256x128, vehicles at 256x256.
IMAGE_SIZES = {'msmt17': (256, 128), 'market1501': (256, 128), 'veri': (256, 256)}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--root', required=True, help='folder holding the torchreid datasets')
    parser.add_argument('--dataset', default='msmt17', choices=sorted(IMAGE_SIZES))
    parser.add_argument('--epochs', type=int, default=PAPER_EPOCHS, help='search epochs')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--num-instances', type=int, default=4, help='images per identity')
    parser.add_argument('--ratios', type=float, nargs=2, metavar=('TRAIN', 'VALID'),
                        help="identity percentages of the two sets; None: the scheme's "
                             '(tcm: 60 80, the overlap schemes: 100 100)')
    parser.add_argument('--scheme', default='tcm', choices=sorted(SCHEMES))
    parser.add_argument('--space', default='reference', choices=sorted(SEARCH_SPACES),
                        help="supernet: the authors' ('reference') or the final network's "
                             "widths and heads ('msinet')")
    parser.add_argument('--lr', type=float, default=0.025, help='SGD lr of the weights')
    parser.add_argument('--arch-lr', type=float, default=0.002, help='Adam lr of alpha')
    parser.add_argument('--height', type=int, help='None: 256')
    parser.add_argument('--width', type=int, help='None: 128 for persons, 256 for vehicles')
    parser.add_argument('--resume', help="checkpoint of a search to continue; 'auto': the "
                                         'latest in --save-dir, if any')
    add_checkpoint_flags(parser)
    parser.add_argument('--save-dir', help='None: log/search/<dataset>')
    parser.add_argument('--eval-freq', type=int, default=50, help='evaluate every N epochs')
    parser.add_argument('--print-freq', type=int, default=100)
    parser.add_argument('--train-epochs', type=int, default=0,
                        help='then train the found genotype for N epochs (0: only print how)')
    parser.add_argument('--workers', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    default_height, default_width = IMAGE_SIZES[args.dataset]
    args.height = args.height or default_height
    args.width = args.width or default_width
    args.save_dir = Path(args.save_dir or Path('log') / 'search' / args.dataset)
    return args


def search(args: argparse.Namespace, datamanager) -> Path:
    use_gpu = args.device.type == 'cuda'
    model = MSINetSupernet(datamanager.num_train_pids, args.space).to(args.device)
    searcher = TCMSearchEngine(
        datamanager, model, *build_search_optimizers(model, args.epochs, args.lr, args.arch_lr),
        scheme=args.scheme, ratios=args.ratios, seed=args.seed,
        num_instances=args.num_instances, use_gpu=use_gpu,
    )
    start_epoch = searcher.resume(args.resume, args.save_dir) if args.resume else 0
    searcher.run(save_dir=str(args.save_dir), max_epoch=args.epochs, start_epoch=start_epoch,
                 eval_freq=args.eval_freq, print_freq=args.print_freq,
                 **checkpoint_options(args))
    return args.save_dir / GENOTYPE_FILE


def train(args: argparse.Namespace, datamanager, genotype_file: Path) -> None:
    """Train the found genotype from scratch with the paper's recipe, scaled to the epochs."""
    name = 'msinet_searched'
    msinet_reid.register_genotype(name, load_genotype(genotype_file))
    recipe = scaled_recipe('scratch', args.train_epochs, eval_freq=args.eval_freq)
    model = models.build_model(name, datamanager.num_train_pids, loss='triplet',
                               pretrained=False).to(args.device)
    optimizer, scheduler = build_optimizer(model, recipe)
    trainer = ImageMSINetEngine(datamanager, model, optimizer, scheduler=scheduler,
                                use_gpu=args.device.type == 'cuda', seed=args.seed,
                                **recipe.engine_kwargs())
    save_dir = args.save_dir / 'train'
    start_epoch = trainer.resume('auto', save_dir) if args.resume else 0
    trainer.run(save_dir=str(save_dir), print_freq=args.print_freq, start_epoch=start_epoch,
                **checkpoint_options(args), **recipe.run_kwargs())


def main(argv: Optional[List[str]] = None) -> Path:
    args = parse_args(argv)
    args.device = distributed.setup_device(args.device)  # under torchrun: this process's GPU
    utils.set_random_seed(args.seed)
    with distributed.main_process_first():  # a dataset download happens once
        datamanager = image_data_manager(
            root=args.root, sources=args.dataset, height=args.height, width=args.width,
            transforms=['random_flip', 'random_crop', 'random_erase'],
            batch_size_train=args.batch_size, batch_size_test=128,
            num_instances=args.num_instances, train_sampler='RandomIdentitySampler',
            workers=args.workers, use_gpu=args.device.type == 'cuda',
        )
    genotype_file = search(args, datamanager)
    if args.train_epochs > 0:
        train(args, datamanager, genotype_file)
    else:
        print(f'=> Or add --train-epochs 350 to this command (with --resume '
              f'{args.save_dir / "search_checkpoint.pth"} the search is not repeated)')
    return genotype_file


if __name__ == '__main__':
    main()
