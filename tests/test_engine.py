"""ImageMSINetEngine: the paper's per-batch losses through torchreid's Engine."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchreid

from msinet_reid.engine import ImageMSINetEngine
from msinet_reid.losses import SpatialAlignLoss
from msinet_reid.optim import WarmupMultiStepLR

NUM_IDS = 4
LABELS = torch.arange(NUM_IDS).repeat_interleave(2)  # 4 identities x 2 images


def build(name='msinet_sam', loss='triplet'):
    return torchreid.models.build_model(name, NUM_IDS, loss=loss, pretrained=False)


def make_engine(model, **kwargs):
    # Only what the engine reads at construction; batches are fed to forward_backward.
    datamanager = SimpleNamespace(train_loader=[], test_loader={}, num_train_pids=NUM_IDS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return ImageMSINetEngine(datamanager, model, optimizer, use_gpu=False, **kwargs)


def batch(labels=LABELS):
    return {'img': torch.randn(len(labels), 3, 64, 32), 'pid': labels}


def total(summary, weight_sa=2.0):
    return summary['loss_t'] + summary['loss_x'] + weight_sa * summary.get('loss_sa', 0)


@pytest.mark.numerics
def test_loss_decreases_on_a_fixed_batch(record_property):
    model = build().train()
    trainer = make_engine(model)
    data = batch()
    losses = [total(trainer.forward_backward(data)) for _ in range(6)]
    record_property('last / first loss', losses[-1] / losses[0])
    assert losses[-1] < 0.7 * losses[0], losses


def test_gradients_reach_every_trainable_parameter_with_sam():
    model = build().train()
    make_engine(model).forward_backward(batch())
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
            assert torch.isfinite(param.grad).all(), name


def test_sam_term_is_the_alignment_loss_of_the_same_forward_pass():
    model = build().train()
    data = batch()
    with torch.no_grad():
        maps = model(data['img'], return_featuremaps=True)
        expected = SpatialAlignLoss('neg')(maps, None, data['pid'])
    summary = make_engine(model, sam_mode='neg').forward_backward(data)
    assert summary['loss_sa'] == pytest.approx(expected.item(), rel=1e-5)


def test_sam_terms_only_with_an_align_module_and_a_weight():
    assert set(make_engine(build()).forward_backward(batch())) == {
        'loss_t', 'loss_x', 'acc', 'loss_sa'}
    assert 'loss_sa' not in make_engine(build('msinet')).forward_backward(batch())
    assert 'loss_sa' not in make_engine(build(), weight_sa=0).forward_backward(batch())


@pytest.mark.parametrize('labels', [torch.zeros(4, dtype=torch.long), torch.arange(4)],
                         ids=['single identity', 'single-image identities'])
def test_degenerate_batches_train_without_nan(labels):
    model = build().train()
    summary = make_engine(model).forward_backward(batch(labels))
    assert all(np.isfinite(value) for value in summary.values()), summary
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_misuse_is_explained():
    with pytest.raises(TypeError, match="loss='triplet'"):
        make_engine(build(loss='softmax').train()).forward_backward(batch())
    with pytest.raises(ValueError, match='amp=True needs CUDA'):
        make_engine(build(), amp=True)
    with pytest.raises(ValueError, match='unknown SAM mode'):
        make_engine(build('msinet'), sam_mode='all')
    with pytest.raises(ValueError, match='loss weights'):
        make_engine(build(), weight_t=0, weight_x=0)


def test_checkpoints_are_atomic_and_resume_with_torchreid(tmp_path):
    model = build('msinet')
    trainer = make_engine(model)
    scheduler = WarmupMultiStepLR(trainer.optimizer)
    trainer.register_model('model', model, trainer.optimizer, scheduler)
    trainer.optimizer.step()
    scheduler.step()
    trainer.save_model(epoch=4, rank1=np.float64(0.5), save_dir=str(tmp_path), is_best=True)
    assert sorted(p.name for p in (tmp_path / 'model').iterdir()) == [
        'model-best.pth.tar', 'model.pth.tar-5']

    fresh = build('msinet')
    optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh_scheduler = WarmupMultiStepLR(optimizer)
    start_epoch = torchreid.utils.resume_from_checkpoint(
        str(tmp_path / 'model' / 'model.pth.tar-5'), fresh, optimizer, fresh_scheduler)
    assert start_epoch == 5 and fresh_scheduler.last_epoch == 1
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                 model.state_dict().values()))
