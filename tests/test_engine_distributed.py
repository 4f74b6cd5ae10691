"""The engines under torchrun: one process and two (gloo) train alike, rank 0 alone writes."""
import json
import os
from contextlib import nullcontext

import pytest
import torch

import msinet_reid  # noqa: F401
from msinet_reid import distributed
from msinet_reid.engine import ImageMSINetEngine
from msinet_reid.losses import SAM_MODES
from msinet_reid.models.msinet import CLASSIFIER_HEADS, TRAINING_HEADS
from torchreid import data as reid_data
from torchreid import models as reid_models

from helpers import FrozenBatchNorm, float64, run_distributed

GLOBAL_BATCH = 8


class FrozenBNEngine(FrozenBatchNorm, ImageMSINetEngine):
    """The paper's losses with BatchNorm on running statistics."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, use_gpu=False, seed=5, **kwargs)
        self.summaries, self.pids = [], []

    def forward_backward(self, data):
        summary = super().forward_backward(data)
        self.summaries.append(summary)
        self.pids.append(sorted(set(data['pid'].tolist())))
        return summary


def _train(root, save_dir, dtype=torch.float32):
    manager = _manager(root)
    with float64(manager) if dtype == torch.float64 else nullcontext():
        torch.manual_seed(0)
        model = reid_models.build_model('msinet_sam', manager.num_train_pids, loss='triplet',
                                        pretrained=False)
        engine = FrozenBNEngine(manager, model, torch.optim.SGD(model.parameters(), lr=0.05))
        engine.run(save_dir=str(save_dir), max_epoch=1, print_freq=100)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert weights.dtype == dtype
    return engine, weights


def _rank_job(info, root, out):
    engine, weights = _train(root, out / 'log', torch.float64)
    torch.save(weights, out / f'weights-{info.rank}.pt')
    (out / f'steps-{info.rank}.json').write_text(json.dumps(
        {'summaries': engine.summaries, 'pids': engine.pids,
         'local_batch': engine.train_loader.batch_sampler.sampler.local_batch_size}))


@pytest.fixture(scope='module')
def root(tiny_market):
    return tiny_market()


@pytest.mark.numerics
@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(root, tmp_path):
    """In float64 (:func:`helpers.float64`), where the two orders of summation differ by
    rounding near 1e-16: every step's losses agree to 1e-9, and so do the weights."""
    single, single_weights = _train(root, tmp_path / 'single', torch.float64)
    assert len(single.summaries) >= 3

    run_distributed(_rank_job, root, tmp_path)
    ranks = [json.loads((tmp_path / f'steps-{r}.json').read_text()) for r in (0, 1)]
    assert [r['local_batch'] for r in ranks] == [GLOBAL_BATCH // 2] * 2
    for step, single_pids in enumerate(single.pids):
        # Each process took its own identities of the single process's batch ...
        assert sorted(ranks[0]['pids'][step] + ranks[1]['pids'][step]) == single_pids
        # ... cross-entropy over their own images averages to the single process's, and
        # triplet and SAM over the gathered global batch equal it on each process.
        summaries = [r['summaries'][step] for r in ranks]
        expected = single.summaries[step]
        mean_x = (summaries[0]['loss_x'] + summaries[1]['loss_x']) / 2
        assert mean_x == pytest.approx(expected['loss_x'], rel=1e-9)
        for summary in summaries:
            assert summary['loss_t'] == pytest.approx(expected['loss_t'], rel=1e-9)
            assert summary['loss_sa'] == pytest.approx(expected['loss_sa'], rel=1e-9)

    weights = [torch.load(tmp_path / f'weights-{r}.pt') for r in (0, 1)]
    assert torch.equal(weights[0], weights[1])  # DDP kept the replicas identical
    torch.testing.assert_close(weights[0], single_weights, rtol=1e-9, atol=1e-12)
    # Rank 0 alone wrote the checkpoint, atomically (no temporary file left).
    assert sorted(p.name for p in (tmp_path / 'log' / 'model').iterdir()) == ['model.pth.tar-1']
    checkpoint = torch.load(tmp_path / 'log' / 'model' / 'model.pth.tar-1', weights_only=True)
    assert not any(key.startswith('module.') for key in checkpoint['state_dict'])


def test_bnneck_shifts_stay_frozen_through_torchreids_epochs(root, tmp_path):
    engine, _ = _train(root, tmp_path)
    frozen = {name for name, p in engine.model.named_parameters() if not p.requires_grad}
    assert frozen == {'head.bias', 'f_head.bias'}
    assert torch.count_nonzero(engine.model.head.bias) == 0


LOSS_SETTINGS = [(mode, weights) for mode in SAM_MODES
                 for weights in ({'weight_x': 0}, {'weight_t': 0}, {})]


def _manager(root, transforms=None):
    return reid_data.ImageDataManager(
        root=str(root), sources='market1501', height=64, width=32, transforms=transforms,
        batch_size_train=GLOBAL_BATCH, num_instances=2, train_sampler='RandomIdentitySampler',
        workers=0, batch_size_test=16)


def _loss_settings_job(info, root, out):
    import builtins

    own_print = builtins.print
    manager = _manager(root)
    results = []
    for mode, weights in LOSS_SETTINGS:
        torch.manual_seed(0)
        model = reid_models.build_model('msinet_sam', manager.num_train_pids, loss='triplet',
                                        pretrained=False)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        engine = ImageMSINetEngine(manager, model, torch.optim.SGD(model.parameters(), lr=0.05),
                                   sam_mode=mode, use_gpu=False, **weights)
        engine.set_model_mode('train')
        for _, batch in zip(range(2), engine.train_loader):
            engine.forward_backward(batch)  # DDP raises if a trained parameter has no gradient
        changed = sorted(n for n, p in model.named_parameters() if not torch.equal(p, before[n]))
        weights_now = torch.cat([p.detach().flatten() for p in model.parameters()])
        replicas = distributed.all_gather(weights_now[None])
        results.append({'changed': changed, 'replicas_equal': torch.equal(*replicas),
                        'print_untouched': builtins.print is own_print})
    (out / f'settings-{info.rank}.json').write_text(json.dumps(results))


@pytest.mark.slow
def test_every_loss_setting_trains_under_two_processes(root, tmp_path):
    run_distributed(_loss_settings_job, root, tmp_path)
    results = json.loads((tmp_path / 'settings-1.json').read_text())
    for (mode, weights), result in zip(LOSS_SETTINGS, results):
        assert result['replicas_equal'], (mode, weights)
        assert result['print_untouched']  # rank 1 is quiet without replacing print
        changed_heads = {name.split('.')[0] for name in result['changed']} & set(TRAINING_HEADS)
        expected = set(CLASSIFIER_HEADS) if weights.get('weight_x', 1) else set()
        if mode != 'neg':
            expected.add('align_module')  # the positive term reads the PAM self-activation
        assert changed_heads == expected, (mode, weights)
        assert any(name.startswith('cells.') for name in result['changed'])  # the backbone


def _fixbase_job(info, root, out):
    manager = _manager(root)
    torch.manual_seed(0)
    model = reid_models.build_model('msinet', manager.num_train_pids, loss='triplet',
                                    pretrained=False)
    engine = ImageMSINetEngine(manager, model, torch.optim.SGD(model.parameters(), lr=0.05),
                               use_gpu=False)
    snapshots = []
    train = engine.train

    def train_and_snapshot(*args, **kwargs):
        train(*args, **kwargs)
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})

    engine.train = train_and_snapshot
    engine.run(save_dir=str(out / f'log-{info.rank}'), max_epoch=2, fixbase_epoch=1,
               open_layers=['classifier', 'f_classifier'], print_freq=100)
    initial = torch.load(out / 'initial.pt')
    changed = [sorted(n for n, p in snap.items() if not torch.equal(p, initial[n]))
               for snap in snapshots]
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    (out / f'fixbase-{info.rank}.json').write_text(json.dumps(
        {'changed': changed,
         'replicas_equal': torch.equal(*distributed.all_gather(weights[None]))}))


@pytest.mark.slow
def test_fixbase_epochs_train_the_open_layers_then_all_under_two_processes(root, tmp_path):
    manager = _manager(root)
    torch.manual_seed(0)  # as each process does: the same initial weights
    model = reid_models.build_model('msinet', manager.num_train_pids, loss='triplet',
                                    pretrained=False)
    torch.save({n: p.detach() for n, p in model.named_parameters()}, tmp_path / 'initial.pt')
    run_distributed(_fixbase_job, root, tmp_path)
    result = json.loads((tmp_path / 'fixbase-0.json').read_text())
    assert result['replicas_equal']
    first, second = result['changed']
    assert {name.split('.')[0] for name in first} == {'classifier', 'f_classifier'}
    assert any(name.startswith('cells.') for name in second)


def _search_job(info, root, out):
    from msinet_reid._torchreid import utils
    from msinet_reid.search import TCMSearchEngine

    utils.set_random_seed(info.rank)  # different initial weights: rank 0's are broadcast
    search = _search_engine(_manager(root, ['random_flip']))
    model = search.model
    checks = []

    def state():
        return torch.cat([*(a.detach().flatten() for a in model.arch_parameters()),
                          *(m.features.flatten() for m in search.memories.values()),
                          *(p.detach().flatten() for p in model.weight_parameters()),
                          *(b.flatten().double() for b in model.buffers())])

    def synchronised_step(data):
        summary = TCMSearchEngine.forward_backward(search, data)
        gathered = distributed.all_gather(state()[None])
        checks.append(torch.equal(gathered[0], gathered[1]))
        return summary

    search.forward_backward = synchronised_step
    search.run(save_dir=str(out / 'search'), max_epoch=1, print_freq=100)
    (out / f'search-{info.rank}.json').write_text(json.dumps(
        {'checks': checks,
         'local_batch': search.train_loader.batch_sampler.sampler.local_batch_size,
         'alpha': [a.tolist() for a in model.arch_parameters()]}))


def _search_engine(manager, plain_sgd=False):
    from msinet_reid.search import MSINetSupernet, TCMSearchEngine, build_search_optimizers

    model = MSINetSupernet(manager.num_train_pids)
    if plain_sgd:  # updates proportional to the gradients (Adam's first steps are not)
        optimizers = (torch.optim.SGD(model.weight_parameters(), lr=0.05, momentum=0.9),
                      torch.optim.SGD(model.arch_parameters(), lr=0.5))
    else:
        optimizers = build_search_optimizers(model, max_epoch=2)
    return TCMSearchEngine(manager, model, *optimizers, use_gpu=False)


@pytest.mark.slow
def test_search_keeps_alpha_weights_buffers_and_memories_identical_on_every_process(
        root, tmp_path):
    run_distributed(_search_job, root, tmp_path)
    for rank in (0, 1):
        result = json.loads((tmp_path / f'search-{rank}.json').read_text())
        assert result['local_batch'] == GLOBAL_BATCH // 2
        assert len(result['checks']) >= 2 and all(result['checks'])
    # Rank 0 alone wrote the genotype, its pictures and the checkpoints ...
    assert sorted(p.name for p in (tmp_path / 'search').iterdir() if not p.name.startswith(
        'events')) == ['genotype.json', 'genotype.png', 'genotype_history.png', 'resume',
                       'search_checkpoint.pth']
    assert [p.name for p in (tmp_path / 'search' / 'resume').iterdir()] == [
        'resume-e0001-b000000.pth.tar']
    # ... which a single process resumes.
    search = _search_engine(_manager(root, ['random_flip']))
    assert search.resume(tmp_path / 'search' / 'search_checkpoint.pth') == 1
    assert [a.tolist() for a in search.model.arch_parameters()] == result['alpha']
    search.run(save_dir=str(tmp_path / 'search'), max_epoch=2, start_epoch=1, print_freq=100)
    assert len(search.history) == 2


SEARCH_STEPS = 3


def _search_steps(root):
    """The search state after ``SEARCH_STEPS`` iterations from the same start, with
    BatchNorm on running statistics (as ``FrozenBNEngine``): a step on the global batch is
    then the same computation on one process or two, up to the order of float sums.

    In float64 (model, memories and images alike), so that the two orders differ by
    rounding near 1e-16 and the comparison can stay tight: in float32, 3 steps of
    rounding at 1e-7 grow to 2e-4 relative on some CPUs (AVX-512), more than any
    tolerance that still catches a wrong update."""
    from msinet_reid._torchreid import utils

    utils.set_random_seed(0)
    manager = _manager(root, transforms=None)
    with float64(manager):
        search = _search_engine(manager, plain_sgd=True)
        search.initialise_memories()
        search.model.train()
        for module in search.model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
        batches = iter(search.train_loader)
        search._valid_batches = iter(search.valid_loader)
        start = search.model.alpha.detach().clone()
        for _ in range(SEARCH_STEPS):
            search.forward_backward(next(batches))
    return {'weights': [p.detach().clone() for p in search.model.weight_parameters()],
            'alpha': search.model.alpha.detach().clone(), 'alpha_start': start,
            'buffers': [b.clone() for b in search.model.buffers()],
            'memories': {k: m.features.clone() for k, m in search.memories.items()}}


def _search_steps_job(info, root, out):
    torch.save(_search_steps(root), out / f'search-state-{info.rank}.pt')


@pytest.mark.numerics
@pytest.mark.slow
def test_two_process_search_steps_update_as_one_process(root, tmp_path):
    single = _search_steps(root)
    assert single['alpha'].dtype == single['memories']['train'].dtype == torch.float64
    run_distributed(_search_steps_job, root, tmp_path)
    for rank in (0, 1):
        state = torch.load(tmp_path / f'search-state-{rank}.pt')
        moved = state['alpha'] - state['alpha_start']
        expected = single['alpha'] - single['alpha_start']
        assert expected.abs().max() > 1e-3
        # float64 rounding (1e-16) grown through 3 steps stays far below 1e-9.
        torch.testing.assert_close(moved, expected, rtol=1e-9, atol=1e-12)
        for subset, memory in single['memories'].items():
            torch.testing.assert_close(state['memories'][subset], memory, rtol=1e-9,
                                       atol=1e-12)
        for want, got in zip(single['weights'], state['weights'], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
        for want, got in zip(single['buffers'], state['buffers'], strict=True):
            assert torch.equal(want, got)


KILLED_RUN = '''
import os, signal, sys
import torch
import msinet_reid
from msinet_reid.engine import ImageMSINetEngine
from msinet_reid.losses import SAM_MODES
from msinet_reid.models.msinet import CLASSIFIER_HEADS, TRAINING_HEADS
from torchreid import data, models

manager = data.ImageDataManager(
    root=sys.argv[1], sources='market1501', height=64, width=32, transforms=None,
    batch_size_train=8, num_instances=2, train_sampler='RandomIdentitySampler', workers=0)
model = models.build_model('msinet', manager.num_train_pids, loss='triplet', pretrained=False)
engine = ImageMSINetEngine(manager, model, torch.optim.SGD(model.parameters(), lr=0.01),
                           use_gpu=False)
step = engine.forward_backward

def forward_backward(data):
    if engine.dist.rank == 1 and engine.batch_idx == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a node failure would
    return step(data)

engine.forward_backward = forward_backward
engine.run(save_dir=sys.argv[2], max_epoch=3, print_freq=1)
'''


@pytest.mark.slow
def test_killing_one_process_fails_the_run_instead_of_hanging(root, tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / 'killed_run.py'
    script.write_text(KILLED_RUN)
    started = time.time()
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         '--standalone', str(script), str(root), str(tmp_path / 'log')],
        capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode != 0
    assert time.time() - started < 300
    assert 'Signals.SIGKILL' in result.stderr or 'SIGKILL' in result.stderr, result.stderr[-2000:]
    assert 'epoch: [1/3][2/' in result.stdout  # it was training when the process died
