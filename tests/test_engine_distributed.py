"""DistributedEngine: one process and two (gloo) train alike, rank 0 alone writes."""
import json

import pytest
import torch
import torch.nn.functional as F

import msinet_reid  # noqa: F401
from msinet_reid.data import make_market1501
from msinet_reid.engine.base import DistributedEngine
from torchreid import data as reid_data
from torchreid import models as reid_models

from helpers import run_distributed

GLOBAL_BATCH = 8


class FrozenBNEngine(DistributedEngine):
    """Cross-entropy on both heads, BatchNorm on running statistics: then a step on a
    global batch is the same computation whether one process or two take it."""

    def __init__(self, datamanager, model, optimizer):
        super().__init__(datamanager, use_gpu=False, seed=5)
        self.model, self.optimizer = model, optimizer
        self.register_model('model', model, optimizer, None)
        self.network = self.parallel(model)
        self.losses, self.pids = [], []

    def two_stepped_transfer_learning(self, *args, **kwargs):
        super().two_stepped_transfer_learning(*args, **kwargs)  # puts every layer in train mode
        for module in self.model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()

    def forward_backward(self, data):
        logits = self.network(data['img'])
        loss = sum(F.cross_entropy(y, data['pid']) for y in logits)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())
        self.pids.append(sorted(set(data['pid'].tolist())))
        return {'loss': loss.item()}


def _train(root, save_dir):
    manager = reid_data.ImageDataManager(
        root=str(root), sources='market1501', height=64, width=32, transforms=None,
        batch_size_train=GLOBAL_BATCH, num_instances=2, train_sampler='RandomIdentitySampler',
        workers=0, batch_size_test=16)
    torch.manual_seed(0)
    model = reid_models.build_model('msinet', manager.num_train_pids, pretrained=False)
    engine = FrozenBNEngine(manager, model, torch.optim.SGD(model.parameters(), lr=0.05))
    engine.run(save_dir=str(save_dir), max_epoch=1, print_freq=100)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return engine, weights


def _rank_job(info, root, out):
    engine, weights = _train(root, out / 'log')
    torch.save(weights, out / f'weights-{info.rank}.pt')
    (out / f'steps-{info.rank}.json').write_text(json.dumps(
        {'losses': engine.losses, 'pids': engine.pids,
         'local_batch': engine.train_loader.batch_size}))


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp('market')
    make_market1501(root, num_train_ids=8, num_test_ids=4, height=64, width=32,
                    progress=False)
    return root


def test_two_processes_match_one_with_the_same_global_batch(root, tmp_path):
    single, single_weights = _train(root, tmp_path / 'single')
    assert len(single.losses) >= 3

    run_distributed(_rank_job, root, tmp_path)
    ranks = [json.loads((tmp_path / f'steps-{r}.json').read_text()) for r in (0, 1)]
    assert [r['local_batch'] for r in ranks] == [GLOBAL_BATCH // 2] * 2
    for step, single_pids in enumerate(single.pids):
        # Each process took its own identities of the single process's batch ...
        assert sorted(ranks[0]['pids'][step] + ranks[1]['pids'][step]) == single_pids
        # ... and the mean of their losses is the single process's loss.
        mean = (ranks[0]['losses'][step] + ranks[1]['losses'][step]) / 2
        assert mean == pytest.approx(single.losses[step], rel=1e-4)

    weights = [torch.load(tmp_path / f'weights-{r}.pt') for r in (0, 1)]
    assert torch.equal(weights[0], weights[1])  # DDP kept the replicas identical
    torch.testing.assert_close(weights[0], single_weights, rtol=1e-4, atol=1e-4)
    # Rank 0 alone wrote the checkpoint, atomically (no temporary file left).
    assert sorted(p.name for p in (tmp_path / 'log' / 'model').iterdir()) == ['model.pth.tar-1']
    checkpoint = torch.load(tmp_path / 'log' / 'model' / 'model.pth.tar-1', weights_only=True)
    assert not any(key.startswith('module.') for key in checkpoint['state_dict'])


def test_bnneck_shifts_stay_frozen_through_torchreids_epochs(root, tmp_path):
    engine, _ = _train(root, tmp_path)
    frozen = {name for name, p in engine.model.named_parameters() if not p.requires_grad}
    assert frozen == {'head.bias', 'f_head.bias'}
    assert torch.count_nonzero(engine.model.head.bias) == 0
