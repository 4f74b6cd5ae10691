"""Cost of one TCM search iteration next to one training step of the fixed MSINet.

Prints parameter counts, the mean time per iteration and the peak memory of

* the supernet's search iteration (``TCMSearchEngine``: model step on a search-train
  batch, memory update, architecture step on a search-valid batch, memory update), and
* MSINet's training step with torchreid's ``ImageTripletEngine`` (cross-entropy +
  triplet, SGD),

on the same random batches (data loading excluded), in one run::

    python benchmarks/search_step.py --device cuda            # paper size: 64 x 256x128
    python benchmarks/search_step.py --quick                  # seconds on a CPU

``--processes N`` instead times the search iteration on N processes (gloo on the CPU,
each taking its share of the global batch), with the gradients averaged one ``all_reduce``
per parameter (as before bucketing) and in flat buckets (``distributed.average_gradients``),
alternating the two::

    python benchmarks/search_step.py --processes 2 --batch-size 16 --height 128 --width 64

The engines need a data manager: a small synthetic Market-1501 at the benchmark's image
size is generated in a temporary folder (its images only fill the memories).
"""
import argparse
import os
import resource
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional
from unittest import mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import msinet_reid  # noqa: F401  (registers the models; torchreid's names in both layouts)
from msinet_reid import distributed
from msinet_reid.data import make_market1501
from msinet_reid.search import MSINetSupernet, TCMSearchEngine, build_search_optimizers
from torchreid import data, engine, models, utils


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--iterations', type=int, default=20, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=3, help='untimed iterations first')
    parser.add_argument('--processes', type=int, default=1,
                        help='>1: time the search iteration on this many gloo processes, '
                             'per-parameter vs bucketed gradient averaging')
    parser.add_argument('--rounds', type=int, default=2,
                        help='with --processes: alternating rounds of each reducer')
    parser.add_argument('--quick', action='store_true',
                        help='tiny settings (8 x 64x32, 2 iterations) to check it runs')
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.height, args.width, args.iterations, args.warmup = 8, 64, 32, 2, 1
    return args


def _peak_memory(device: torch.device) -> str:
    if device.type == 'cuda':
        return f'{torch.cuda.max_memory_allocated(device) / 2 ** 20:,.0f} MiB (CUDA allocated)'
    # ru_maxrss is in KiB on Linux; it never decreases, so it bounds every phase so far.
    return f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10:,.0f} MiB (process RSS)'


def _time(step: Callable[[], None], device: torch.device, iterations: int, warmup: int) -> float:
    """Mean seconds per call of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iterations


def _params(model: torch.nn.Module) -> str:
    return f'{sum(p.numel() for p in model.parameters()):,}'


def _search_setup(args, device: torch.device):
    """A search engine with filled memories, and one search-train and one search-valid
    batch of random images (this process's share of the global batch)."""
    use_gpu = device.type == 'cuda'
    utils.set_random_seed(0)
    num_instances = 4
    # Enough identities that both search sets fill a batch at the default 60%-80% split.
    num_ids = max(8, 2 * args.batch_size // num_instances)
    with tempfile.TemporaryDirectory() as root:
        make_market1501(root, num_train_ids=num_ids, num_test_ids=4, images_per_camera=2,
                        num_cameras=2, height=args.height, width=args.width, progress=False)
        datamanager = data.ImageDataManager(
            root=root, sources='market1501', height=args.height, width=args.width,
            batch_size_train=args.batch_size, num_instances=num_instances,
            train_sampler='RandomIdentitySampler', workers=0, use_gpu=use_gpu,
        )
        supernet = MSINetSupernet(num_ids).to(device)
        search = TCMSearchEngine(datamanager, supernet, *build_search_optimizers(supernet),
                                 use_gpu=use_gpu)
        search.initialise_memories()

    local_batch = args.batch_size // distributed.get_world_size()

    def batch(num_labels: int):
        imgs = torch.randn(local_batch, 3, args.height, args.width, device=device)
        labels = torch.arange(local_batch, device=device) // num_instances % num_labels
        return imgs, labels

    train_batch = batch(len(search.split.train_pids))
    valid_batch = batch(len(search.split.valid_pids))
    supernet.train()

    def search_iteration():
        search.model_step(*train_batch)
        search.architecture_step(*valid_batch)

    return datamanager, search, train_batch, search_iteration


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.processes > 1:
        return compare_reducers(args)
    device = torch.device(args.device)
    use_gpu = device.type == 'cuda'
    datamanager, search, train_batch, search_iteration = _search_setup(args, device)
    supernet, num_ids = search.model, datamanager.num_train_pids

    msinet = models.build_model('msinet', num_ids, loss='triplet', pretrained=False).to(device)
    trainer = engine.ImageTripletEngine(
        datamanager, msinet, torch.optim.SGD(msinet.parameters(), lr=0.065, momentum=0.9),
        use_gpu=use_gpu)
    msinet.train()
    fixed_batch = {'img': train_batch[0], 'pid': train_batch[1]}
    fixed_time = _time(lambda: trainer.forward_backward(fixed_batch), device, args.iterations,
                       args.warmup)
    fixed_memory = _peak_memory(device)

    search_time = _time(search_iteration, device, args.iterations, args.warmup)
    search_memory = _peak_memory(device)

    print(f'{args.batch_size} images of {args.height}x{args.width} on {device}, mean of '
          f'{args.iterations} iterations after {args.warmup} warm-up')
    rows = [('', 'parameters', 's / iteration', 'peak memory'),
            ('MSINet training step', _params(msinet), f'{fixed_time:.4f}', fixed_memory),
            ('TCM search iteration', _params(supernet), f'{search_time:.4f}', search_memory)]
    for row in rows:
        print(f'{row[0]:<22}{row[1]:>12}{row[2]:>15}   {row[3]}')
    print(f'search / training time: {search_time / fixed_time:.2f}x')
    return {'fixed_time': fixed_time, 'search_time': search_time}


def average_per_parameter(params: Iterable[torch.Tensor]) -> None:
    """The baseline: one ``all_reduce`` per gradient, as the search did before bucketing."""
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(distributed.get_world_size())


REDUCERS = {'per parameter': average_per_parameter,
            'bucketed': distributed.average_gradients}


def _reducer_worker(rank: int, args, port: int, results) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(args.processes))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.processes))
    distributed.init_distributed(backend='gloo')
    try:
        device = torch.device('cpu')
        search_iteration = _search_setup(args, device)[-1]
        calls = {'count': 0}
        all_reduce = dist.all_reduce

        def counted_all_reduce(*a, **k):
            calls['count'] += 1
            return all_reduce(*a, **k)

        times: Dict[str, List[float]] = {name: [] for name in REDUCERS}
        counts: Dict[str, int] = {}
        for _ in range(args.rounds):
            for name, reducer in REDUCERS.items():
                with mock.patch.object(distributed, 'average_gradients', reducer), \
                        mock.patch.object(dist, 'all_reduce', counted_all_reduce):
                    times[name].append(_time(search_iteration, device, args.iterations,
                                             args.warmup))
                    calls['count'] = 0
                    search_iteration()
                    counts[name] = calls['count']
        if rank == 0:
            results.update({name: {'time': sum(t) / len(t), 'all_reduce_calls': counts[name]}
                            for name, t in times.items()})
    finally:
        dist.destroy_process_group()


def compare_reducers(args) -> dict:
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        shared = manager.dict()
        mp.spawn(_reducer_worker, args=(args, port, shared), nprocs=args.processes)
        results = dict(shared)
    print(f'{args.batch_size} images of {args.height}x{args.width} over {args.processes} gloo '
          f'processes, {args.rounds} alternating rounds of {args.iterations} iterations after '
          f'{args.warmup} warm-up')
    print(f'{"gradient averaging":<22}{"all_reduce / iteration":>24}{"s / iteration":>15}')
    for name, row in results.items():
        print(f'{name:<22}{row["all_reduce_calls"]:>24}{row["time"]:>15.4f}')
    ratio = results['bucketed']['time'] / results['per parameter']['time']
    print(f'bucketed / per-parameter time: {ratio:.2f}x')
    return results


if __name__ == '__main__':
    main()
