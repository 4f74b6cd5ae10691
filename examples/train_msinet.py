"""Run the paper's experiments (Table 2, Table 5) with torchreid and msinet-reid: the
``msinet-reid train`` command, with its flags, config files and KEY VALUE overrides
(``--help``).

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
to train; ``--data PATH`` trains on data of one's own. Vehicles (``veri``, ``vehicleid``)
train at 256x256, persons at 256x128. A model card is written beside the weights.
"""
import argparse
import sys
from typing import List, Optional

from msinet_reid.cli import build_parser, run_train


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """``msinet-reid train``'s arguments of ``argv`` (default: the command line's)."""
    return build_parser().parse_args(['train', *(sys.argv[1:] if argv is None else argv)])


def main(argv: Optional[List[str]] = None):
    """``msinet-reid train`` with ``argv``; returns the engine (``None`` for
    ``--print-config``)."""
    return run_train(parse_args(argv))


if __name__ == '__main__':
    main()
