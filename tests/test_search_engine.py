"""TCMSearchEngine on a tiny synthetic Market-1501: steps, end-to-end search, resume."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F

import msinet_reid
from msinet_reid._torchreid import data, engine, models, utils
from msinet_reid.data import make_market1501
from msinet_reid.search import (
    MSINetSupernet, TCMSearchEngine, build_search_optimizers, load_genotype,
)
from msinet_reid.search.engine import CHECKPOINT_FILE, GENOTYPE_FILE

EPOCHS = 2
RUN = dict(max_epoch=EPOCHS, print_freq=100, ranks=[1])


@pytest.fixture(scope='module')
def datamanager(tmp_path_factory):
    root = tmp_path_factory.mktemp('market')
    make_market1501(root, num_train_ids=8, num_test_ids=4, images_per_camera=2, num_cameras=2,
                    height=64, width=32, progress=False)
    return data.ImageDataManager(
        root=str(root), sources='market1501', height=64, width=32, transforms=['random_flip'],
        batch_size_train=8, batch_size_test=32, num_instances=4, workers=0,
        train_sampler='RandomIdentitySampler', use_gpu=False,
    )


def _engine(datamanager, scheme='tcm', plain_sgd=False, seed=0):
    utils.set_random_seed(seed)
    model = MSINetSupernet(datamanager.num_train_pids)
    if plain_sgd:  # updates that are easy to recompute by hand
        optimizers = (torch.optim.SGD(model.weight_parameters(), lr=0.1),
                      torch.optim.SGD(model.arch_parameters(), lr=0.1))
    else:
        optimizers = build_search_optimizers(model, max_epoch=EPOCHS)
    return TCMSearchEngine(datamanager, model, *optimizers, scheme=scheme, use_gpu=False)


def _batch(search, loader):
    return search._batch(next(iter(loader)))


def _weights(model):
    return [p.detach().clone() for p in model.weight_parameters()]


def _alphas(model):
    return [a.detach().clone() for a in model.arch_parameters()]


def _changed(before, after):
    return [not torch.equal(b, a) for b, a in zip(before, after)]


def test_memories_start_at_the_identity_centroids_of_the_supernets_features(datamanager):
    search = _engine(datamanager)
    search.initialise_memories()
    search.model.eval()
    for subset, items in (('train', search.split.train), ('valid', search.split.valid)):
        images = torch.stack([datamanager.transform_te(utils.read_image(item[0]))
                              for item in items])
        with torch.no_grad():
            features = F.normalize(search.model(images), dim=1)
        num_ids = len(search.memories[subset].features)
        for label in range(num_ids):
            mine = torch.tensor([item[1] == label for item in items])
            centroid = F.normalize(features[mine].mean(0), dim=0)
            assert torch.allclose(search.memories[subset].features[label], centroid, atol=1e-5)


@pytest.mark.parametrize('scheme', ['tcm', 'ce_overlap'])
def test_alpha_moves_only_on_the_validation_step_weights_only_on_the_training_step(
        datamanager, scheme):
    search = _engine(datamanager, scheme)
    search.initialise_memories()
    search.model.train()
    weights, alphas = _weights(search.model), _alphas(search.model)
    search.model_step(*_batch(search, search.train_loader))
    assert not any(_changed(alphas, _alphas(search.model)))
    assert any(_changed(weights, _weights(search.model)))

    weights, alphas = _weights(search.model), _alphas(search.model)
    search.architecture_step(*_batch(search, search.valid_loader))
    assert not any(_changed(weights, _weights(search.model)))
    assert all(_changed(alphas, _alphas(search.model)))


def _expected_sgd_update(search, params, subset, imgs, labels):
    """``p - lr * grad`` of ``subset``'s loss alone, on a copy of the engine's state."""
    shadow = copy.copy(search)
    shadow.model = copy.deepcopy(search.model)
    shadow.memories = copy.deepcopy(search.memories)
    shadow_params = [p for p in params(shadow.model) if p.requires_grad]
    loss, _ = shadow._loss(imgs, labels, subset)
    grads = torch.autograd.grad(loss, shadow_params, allow_unused=True)
    return [p.detach() if g is None else (p - 0.1 * g).detach()
            for p, g in zip(shadow_params, grads)]


def _trainable(params):
    return [p for p in params if p.requires_grad]


def _grads(params):
    return [None if p.grad is None else p.grad.clone() for p in params]


def _assert_same_grads(before, params):
    for grad, param in zip(before, params, strict=True):
        assert (grad is None and param.grad is None) or torch.equal(grad, param.grad)


def test_no_gradient_leaks_between_the_two_steps(datamanager):
    """Each update is ``p - lr * grad`` of its own step's loss alone (nothing accumulated
    from the other step or an earlier one), and neither step writes gradients into the
    other optimiser's parameters (``backward(inputs=...)``)."""
    search = _engine(datamanager, plain_sgd=True)
    search.initialise_memories()
    search.model.train()
    train_batch = _batch(search, search.train_loader)
    valid_batch = _batch(search, search.valid_loader)
    weights = _trainable(search.model.weight_parameters())
    alphas = search.model.arch_parameters()

    # Architecture step first: its gradients must not reach the following weight update.
    search.architecture_step(*valid_batch)
    expected = _expected_sgd_update(search, MSINetSupernet.weight_parameters, 'train',
                                    *train_batch)
    alpha_grads = _grads(alphas)
    search.model_step(*train_batch)
    for want, got in zip(expected, weights, strict=True):
        assert torch.allclose(want, got, atol=1e-6)
    _assert_same_grads(alpha_grads, alphas)

    # And the weight step's gradients must not reach the following alpha update.
    search.model_step(*train_batch)
    expected = _expected_sgd_update(search, MSINetSupernet.arch_parameters, 'valid',
                                    *valid_batch)
    weight_grads = _grads(weights)
    search.architecture_step(*valid_batch)
    for want, got in zip(expected, alphas, strict=True):
        assert torch.allclose(want, got, atol=1e-7)
    _assert_same_grads(weight_grads, weights)


def test_tiny_search_finds_a_genotype_that_builds_and_trains(datamanager, tmp_path, unique_name):
    search = _engine(datamanager)
    search.run(save_dir=str(tmp_path), **RUN)
    assert len(search.history) == EPOCHS
    genotype = load_genotype(tmp_path / GENOTYPE_FILE)
    assert genotype == search.model.genotype() == tuple(search.history[-1])
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    record = json.loads((tmp_path / GENOTYPE_FILE).read_text())
    assert record['epoch'] == EPOCHS and record['ratios'] == [60, 80]
    assert torch.allclose(torch.tensor(record['alpha_softmax']).sum(1), torch.ones(12))
    assert list(tmp_path.glob('events.out.tfevents.*'))  # TensorBoard log
    for picture in ('genotype.png', 'genotype_history.png'):  # beside the genotype file
        assert (tmp_path / picture).read_bytes().startswith(b'\x89PNG')

    name = unique_name()
    msinet_reid.register_genotype(name, genotype)
    model = models.build_model(name, datamanager.num_train_pids, loss='softmax',
                               pretrained=False)
    assert model.genotype == genotype
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    trainer = engine.ImageSoftmaxEngine(datamanager, model, optimizer, use_gpu=False)
    before = [p.detach().clone() for p in model.parameters()]
    summary = trainer.forward_backward(next(iter(datamanager.train_loader)))
    assert torch.isfinite(torch.tensor(summary['loss']))
    assert any(_changed(before, list(model.parameters())))


def test_resume_refuses_another_split(datamanager, tmp_path):
    search = _engine(datamanager)
    search.initialise_memories()
    search.save_model(0, None, tmp_path)
    other = _engine(datamanager, scheme='tcm_overlap')
    with pytest.raises(ValueError, match='same scheme, ratios, seed and data'):
        other.resume(tmp_path / CHECKPOINT_FILE)


def test_engine_rejects_mixed_up_optimizers(datamanager):
    model = MSINetSupernet(datamanager.num_train_pids)
    everything = torch.optim.SGD(model.parameters(), lr=0.1)
    arch = torch.optim.Adam(model.arch_parameters())
    with pytest.raises(ValueError, match='optimizer holds architecture parameters'):
        TCMSearchEngine(datamanager, model, everything, arch, use_gpu=False)
    with pytest.raises(ValueError, match='needs 2'):
        TCMSearchEngine(datamanager, model, torch.optim.SGD(model.weight_parameters(), lr=0.1),
                        arch, ratios=(10, 90), use_gpu=False)
