"""MSINet inside SpCL and IDM: the contracts of their model factories, stated here.

SpCL (yxgeee/SpCL) and IDM (SikaStar/IDM) are not installed; the parts of them the
encoders meet are written below as stand-ins that follow their contracts:

* ``models.create(name, **kwargs)`` looks ``name`` up in a dict and calls it with the
  keywords pretrained, cut_at_pooling, num_features, norm, dropout, num_classes.
* SpCL's ``convert_dsbn`` walks ``named_children`` recursively and swaps every
  BatchNorm1d/2d for a 2-way domain-specific BN (source half, target half).
* IDM's ``convert_dsbn_idm(model, names)`` does the same, but a child whose name contains
  one of ``names`` (substring match, inherited by everything below it) gets a 3-way BN
  (source, target, mixed thirds). ``train_idm.py`` builds ``names`` with
  ``filter_layers(stage)``: ``['conv', 'layer1', 'layer2', 'layer3', 'layer4',
  'feat_bn'][stage + 1:]``.
* IDM's mixing module is built as ``IDM(channel=C)``; in training it takes the batch
  (source then target, ``n`` each) and returns ``(cat(source, target, mixed), ratios)``
  with ``ratios`` of shape ``(n, 2)``, rows summing to one.
* What the trainers unpack from a training forward differs: SpCL's trainers take the
  plain ResNet's output as one tensor (logits with a classifier, else the embedding);
  IDM's ``Baseline_Trainer`` unpacks ``prob, feats = model(inputs)`` (its ResNet returns
  ``(logits, pooled)``, or ``(logits, pooled, normalised embedding)`` with ``norm``) and
  feeds ``feats`` to its triplet loss and XBM memory (``--featureSize``); its scripts
  initialise classifier rows from eval-mode features.
* Their scripts call ``models.create`` without ``pretrained``; IDM's put the working
  directory on ``sys.path`` themselves (``sys.path.append(".")``) before ``from idm
  import models``: IDM has no setup.py and runs from its checkout.
"""
import sys
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from msinet_reid.integrations import (
    MSINetIDM, MSINetIDMEncoder, constructors, find_host, idm_bn_names, register_models,
)
from msinet_reid.models import MSINet, MSINetEncoder
from msinet_reid.weights import ENV_VAR, PretrainedWeightsError

from helpers import load_script

N, HEIGHT, WIDTH = 2, 64, 32  # n images per domain; MSINet's smallest input height
SPCL_KWARGS = dict(pretrained=False, cut_at_pooling=False, num_features=0, norm=False,
                   dropout=0, num_classes=0)
# (channels, height, width) at each mixing point for 64x32 inputs: stem, stages 1-3.
MIXING_POINTS = [(64, 16, 8), (256, 8, 4), (384, 4, 2), (512, 4, 2)]


# ---------------------------------------------------------------- stand-ins for SpCL/IDM

def create(factory, name, **kwargs):
    """SpCL's and IDM's ``models.create``."""
    if name not in factory:
        raise KeyError('Unknown model:', name)
    return factory[name](**kwargs)


class DomainBN(nn.Module):
    """A ``ways``-way domain-specific BN: one copy of the BN per equal slice of the batch.

    Eval mode uses the target copy, as SpCL's and IDM's DSBN do. Records the batch
    sizes it sees in training.
    """

    def __init__(self, bn: nn.Module, ways: int) -> None:
        super().__init__()
        self.ways = ways
        self.bns = nn.ModuleList(type(bn)(bn.num_features) for _ in range(ways))
        for copy in self.bns:
            copy.load_state_dict(bn.state_dict())
        self.seen = []

    def forward(self, x):
        if not self.training:
            return self.bns[1](x)
        self.seen.append(len(x))
        assert len(x) % self.ways == 0, f'{self.ways}-way BN got a batch of {len(x)}'
        return torch.cat([bn(part) for bn, part in zip(self.bns, x.chunk(self.ways))])


def convert_dsbn(model):
    """SpCL's ``convert_dsbn``; its CPU check needs every container to hold parameters."""
    for name, child in model.named_children():
        assert not next(model.parameters()).is_cuda
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            setattr(model, name, DomainBN(child, 2))
        else:
            convert_dsbn(child)


def convert_dsbn_idm(model, mixup_bn_names, idm=False):
    """IDM's ``convert_dsbn_idm``."""
    for name, child in model.named_children():
        assert not next(model.parameters()).is_cuda
        flag = idm or any(token in name for token in mixup_bn_names)
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            setattr(model, name, DomainBN(child, 3 if flag else 2))
        else:
            convert_dsbn_idm(child, mixup_bn_names, idm=flag)


def filter_layers(stage):
    """IDM's ``train_idm.filter_layers``, written for ResNet-50."""
    return ['conv', 'layer1', 'layer2', 'layer3', 'layer4', 'feat_bn'][stage + 1:]


class StandInIDM(nn.Module):
    """A mixing module with IDM's interface; records the maps it mixes."""

    def __init__(self, channel=64):
        super().__init__()
        self.channel = channel
        self.fc = nn.Linear(channel, 2)
        self.inputs = []

    def forward(self, x):
        if not self.training:
            return x
        self.inputs.append(tuple(x.shape))
        source, target = x.chunk(2)
        ratios = torch.softmax(self.fc(source.mean((2, 3)) + target.mean((2, 3))), dim=1)
        self.ratios = ratios
        mixed = ratios[:, 0, None, None, None] * source + ratios[:, 1, None, None, None] * target
        return torch.cat((source, target, mixed)), ratios


# ---------------------------------------------------------------- helpers

def images(n=N):
    return torch.randn(n, 3, HEIGHT, WIDTH)


def host_factory(package='spcl'):
    """``package``'s model factory (one ResNet from ``<package>.models``) with MSINet added."""
    def resnet50(**kwargs):
        raise AssertionError('not built in these tests')

    resnet50.__module__ = f'{package}.models.resnet'
    factory = {'resnet50': resnet50}
    register_models(factory)
    return factory


def spcl_factory():
    return host_factory('spcl')


def build(name='msinet', **kwargs):
    return create(spcl_factory(), name, **{**SPCL_KWARGS, **kwargs})


def build_idm(**kwargs):
    return MSINetIDM(**{**SPCL_KWARGS, 'mixing_module': StandInIDM, **kwargs})


def batch_norms(model):
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))}


def is_unit(x):
    return torch.allclose(x.norm(dim=1), torch.ones(len(x)), atol=1e-5)


# ---------------------------------------------------------------- SpCL-style encoders

@pytest.mark.parametrize('kwargs, width, train_output', [
    # SpCL's USL/UDA recipe: the 768-d normalised embedding is the memory's feature.
    (dict(num_features=0, norm=True), 768, 'unit'),
    (dict(num_features=256, norm=False), 256, 'relu'),  # feat -> feat_bn -> ReLU
    (dict(num_features=0, norm=False), 768, 'bn'),  # feat_bn output as is
    (dict(num_features=128, norm=True, dropout=0.5, num_classes=10), 128, 'logits'),
    (dict(num_features=0, norm=False, num_classes=10), 768, 'logits'),
])
def test_spcl_outputs(kwargs, width, train_output):
    model = build(**kwargs)
    assert isinstance(model, MSINetEncoder) and model.num_features == width
    assert not model.feat_bn.bias.requires_grad  # SpCL freezes the BN shift
    x = images(4)
    out = model.train()(x)
    if train_output == 'logits':
        assert out.shape == (4, 10) and model.classifier.bias is None
    else:
        assert out.shape == (4, width)
        assert is_unit(out) == (train_output == 'unit')
        assert (out.min() >= 0) == (train_output == 'relu')
    with torch.no_grad():
        features = model.eval()(x)
    assert features.shape == (4, width) and is_unit(features)


def test_every_arch_builds_and_dropout_is_applied():
    for name in ('msinet', 'msinet_vr', 'msinet_s'):
        model = build(name, num_features=64, norm=True, dropout=0.5).train()
        assert isinstance(model.drop, nn.Dropout) and model.drop.p == 0.5
        out = model(images(4))
        assert (out == 0).any()  # dropout zeroed some entries


def test_embedding_is_msinets_768d_feature_and_pretrained_loads(tmp_path):
    """cut_at_pooling gives MSINet's eval feature (global 512 + part 256); pretrained=True
    loads through the msinet factory's weights loader."""
    reference = MSINet(1, 'msinet').eval()
    path = tmp_path / 'msinet.pth'
    torch.save({'state_dict': reference.state_dict()}, path)
    pooled = build(pretrained=True, pretrained_path=path, cut_at_pooling=True).eval()
    encoder = build(pretrained=True, pretrained_path=path, num_features=0).eval()
    assert pooled.num_features == encoder.num_features == 768
    x = images(3)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(pooled(x), expected)
        # feat_bn is fresh (mean 0, variance 1): the embedding is the normalised feature.
        torch.testing.assert_close(encoder(x), F.normalize(expected), atol=1e-4, rtol=1e-4)
    heads = ('head', 'fc', 'classifier', 'f_head', 'f_fc', 'f_classifier')
    assert not any(key.split('.')[1] in heads for key in encoder.state_dict())


def test_spcl_dsbn_conversion():
    model = build(num_features=256, norm=True).eval()
    before = batch_norms(model)
    x = images()
    with torch.no_grad():
        expected = model(x)
    convert_dsbn(model)
    assert not batch_norms(model).keys() - {f'{n}.bns.{i}' for n in before for i in (0, 1)}
    converted = [m for m in model.modules() if isinstance(m, DomainBN)]
    assert len(converted) == len(before)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), expected)  # target BN = the original
    out = model.train()(torch.cat((images(), images())))  # source then target
    out.sum().backward()
    assert out.shape == (2 * N, 256)
    assert all(m.seen == [2 * N] for m in converted)


# ---------------------------------------------------------------- registration

def test_register_models_adds_every_constructor():
    factory = {'resnet50': lambda **kwargs: None}
    names = register_models(factory)
    assert names == list(constructors()) == [
        'msinet', 'msinet_vr', 'msinet_s', 'msinet_idm', 'msinet_vr_idm', 'msinet_s_idm']
    assert sorted(factory) == sorted(names + ['resnet50'])
    assert register_models(factory, prefix='x_') == ['x_' + name for name in names]


def test_register_models_refuses_clashes_without_registering_anything():
    factory = {'msinet_s': print}
    with pytest.raises(ValueError, match='already has models named msinet_s; nothing was '
                                         'registered. Pass prefix='):
        register_models(factory)
    assert factory == {'msinet_s': print}


@pytest.mark.parametrize('factory, message', [
    (types.ModuleType('spcl.models'), 'needs the model factory dict'),
    ([('resnet50', print)], 'needs the model factory dict'),
    ({'resnet50': 'ResNet'}, "entry 'resnet50'"),
    ({50: print}, 'entry 50'),
])
def test_register_models_refuses_what_is_not_a_factory(factory, message):
    with pytest.raises(TypeError, match=message):
        register_models(factory)


def test_register_models_binds_the_mixing_module():
    factory = {}
    register_models(factory, mixing_module=StandInIDM)
    model = create(factory, 'msinet_idm', **SPCL_KWARGS)
    assert all(isinstance(m, StandInIDM) for m in model.idm)
    with pytest.raises(TypeError, match='mixing_module must be an nn.Module class'):
        register_models({}, mixing_module=StandInIDM())


# ---------------------------------------------------------------- each host's contract

SCRIPT_KWARGS = {key: value for key, value in SPCL_KWARGS.items() if key != 'pretrained'}


def idm_baseline_step(model, num_classes):
    """One iteration of IDM's ``Baseline_Trainer``: source then target images in one
    batch, ``prob, feats = model(inputs)``, cross-entropy on the logits, a triplet-style
    loss on ``feats``."""
    prob, feats = model(torch.cat((images(), images())))
    targets = torch.arange(2 * N) % num_classes
    loss = F.cross_entropy(prob[:, :num_classes], targets) + torch.cdist(feats, feats).mean()
    loss.backward()
    return prob, feats


@pytest.mark.parametrize('package, encoder', [
    ('spcl', MSINetEncoder), ('idm', MSINetIDMEncoder), ('clustercontrast', MSINetEncoder),
])
def test_each_host_gets_the_encoder_its_trainers_unpack(package, encoder):
    factory = host_factory(package)
    assert find_host(factory) == package.replace('clustercontrast', 'spcl')
    assert type(create(factory, 'msinet', **SPCL_KWARGS)) is encoder
    assert type(create(factory, 'msinet_idm', mixing_module=StandInIDM, **SPCL_KWARGS)) is MSINetIDM


def test_the_host_can_be_named():
    factory = {}
    register_models(factory, host='idm')
    assert type(create(factory, 'msinet', **SPCL_KWARGS)) is MSINetIDMEncoder
    with pytest.raises(ValueError, match="host='torchreid': MSINet has encoders for spcl, idm"):
        register_models({}, host='torchreid')


def test_idm_baseline_trains_msinet_as_its_resnet():
    """train_baseline.py: models.create(arch, num_features=0, norm=False, dropout=0,
    num_classes=C), convert_dsbn, classifier rows from eval features, Baseline_Trainer."""
    model = create(host_factory('idm'), 'msinet', pretrained=False, num_features=0,
                   norm=False, dropout=0, num_classes=6)
    convert_dsbn(model)
    with torch.no_grad():
        centroids = model.eval()(images(3))
        model.classifier.weight[:3] = centroids
    prob, feats = idm_baseline_step(model.train(), 6)
    assert prob.shape == (2 * N, 6) and feats.shape == (2 * N, 768)  # --featureSize 768
    assert model.classifier.weight.grad is not None
    assert model.base.conv1.conv.weight.grad is not None


def test_idm_plain_outputs_follow_its_resnet():
    def build_plain(**kwargs):
        return create(host_factory('idm'), 'msinet', **{**SPCL_KWARGS, **kwargs})

    x = images(4)
    logits, pooled, normalised = build_plain(num_features=64, norm=True, num_classes=6).train()(x)
    assert logits.shape == (4, 6) and pooled.shape == (4, 768)
    assert normalised.shape == (4, 64) and is_unit(normalised)
    embedding = build_plain(num_features=64).train()(x)
    assert embedding.shape == (4, 64) and embedding.min() >= 0  # ReLU after feat
    model = build_plain(num_classes=6).eval()
    with torch.no_grad():
        prob, pooled = model(x, output_prob=True)
        features = model(x)
    assert prob.shape == (4, 6) and pooled.shape == (4, 768)
    assert features.shape == (4, 768) and is_unit(features)


# ---------------------------------------------------------------- pretrained weights

@pytest.mark.parametrize('name', ['msinet_vr', 'msinet_s', 'msinet_vr_idm', 'msinet_s_idm'])
def test_unpublished_weights_start_from_scratch_with_a_warning(name):
    """The scripts never pass pretrained=False; these MSINets have no published weights."""
    factory = {}
    register_models(factory, mixing_module=StandInIDM)
    arch = name.replace('_idm', '')
    with pytest.warns(UserWarning, match=rf"{name}: no ImageNet weights are published for "
                                         rf"MSINet '{arch}', so it starts from random "
                                         rf"initialisation.*pass pretrained_path="):
        model = create(factory, name, **SCRIPT_KWARGS)
    assert model.num_features == 768


def test_weights_of_your_own_load_without_a_warning(tmp_path):
    reference = MSINet(1, 'msinet_s')
    path = tmp_path / 'msinet_s.pth'
    torch.save({'state_dict': reference.state_dict()}, path)
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='.*no ImageNet weights')
        model = create(spcl_factory(), 'msinet_s', pretrained_path=path, **SCRIPT_KWARGS)
    torch.testing.assert_close(model.base.conv1.conv.weight, reference.conv1.conv.weight)


def test_msinet_loads_its_published_weights_as_before(tmp_path, monkeypatch):
    reference = MSINet(1, 'msinet')
    path = tmp_path / 'msinet.pth'
    torch.save({'state_dict': reference.state_dict()}, path)
    monkeypatch.setenv(ENV_VAR, str(path))  # stands for the downloaded file
    model = create(spcl_factory(), 'msinet', **SCRIPT_KWARGS)
    torch.testing.assert_close(model.base.conv1.conv.weight, reference.conv1.conv.weight)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / 'missing.pth'))
    with pytest.raises(PretrainedWeightsError, match='No pretrained weights at'):
        create(spcl_factory(), 'msinet', **SCRIPT_KWARGS)


# ---------------------------------------------------------------- IDM-style encoder

def test_mixing_module_is_imported_from_idm(monkeypatch):
    module = types.ModuleType('idm.models.idm_module')
    module.IDM = StandInIDM
    for name in ('idm', 'idm.models'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, 'idm.models.idm_module', module)
    model = create(spcl_factory(), 'msinet_idm', **SPCL_KWARGS)
    assert [type(m) for m in model.idm] == [StandInIDM] * 4
    assert [m.channel for m in model.idm] == [c for c, _, _ in MIXING_POINTS]


def test_missing_idm_install_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'idm', None)  # "import idm" fails
    with pytest.raises(ImportError, match='from idm.models.idm_module import IDM.*failed.*'
                                          'mixing_module=IDM'):
        create(spcl_factory(), 'msinet_idm', **SPCL_KWARGS)


@pytest.mark.parametrize('stage', range(4))
def test_idm_mixes_at_the_requested_stage_only_in_training(stage):
    model = build_idm(num_classes=5).train()
    logits, pooled, ratios = model(images(2 * N), stage=stage)
    for index, module in enumerate(model.idm):
        assert module.inputs == ([(2 * N, *MIXING_POINTS[stage])] if index == stage else [])
    assert logits.shape == (3 * N, 5) and pooled.shape == (3 * N, 768)
    assert ratios is model.idm[stage].ratios and ratios.shape == (N, 2)
    (logits.sum() + pooled.sum() + ratios.sum()).backward()
    assert model.idm[stage].fc.weight.grad is not None

    with torch.no_grad():
        features = model.eval()(images(3), stage=stage)
    assert features.shape == (3, 768) and is_unit(features)
    assert len(model.idm[stage].inputs) == 1  # not called in eval mode


def test_idm_train_outputs_follow_resnet_idm():
    x = images(2 * N)
    logits, pooled, normalised = build_idm(num_features=64, norm=True, num_classes=5).train()(x)
    assert logits.shape == (3 * N, 5) and pooled.shape == (3 * N, 768)
    assert normalised.shape == (3 * N, 64) and is_unit(normalised)
    embedding = build_idm(num_features=64).train()(x, stage=1)
    assert embedding.shape == (3 * N, 64) and embedding.min() >= 0  # ReLU after feat
    assert build_idm(cut_at_pooling=True).train()(x, stage=2).shape == (3 * N, 768)
    prob, _, ratios = build_idm(num_classes=5).eval()(images(3), output_prob=True)
    assert prob.shape == (3, 5) and ratios is None


def test_mixing_after_the_last_stage_mixes_both_heads_with_the_same_ratios():
    model = build_idm(cut_at_pooling=True).train()
    pooled = model(images(2 * N), stage=3)
    ratios = model.idm[3].ratios
    source, target, mixed = pooled.chunk(3)
    torch.testing.assert_close(mixed, ratios[:, :1] * source + ratios[:, 1:] * target)


def test_idm_eval_features_equal_the_spcl_encoder():
    """The stage-by-stage path of the IDM variant computes what MSINet.featuremaps does."""
    idm_model = build_idm(num_features=32).eval()
    encoder = build(num_features=32).eval()
    missing, unexpected = encoder.load_state_dict(idm_model.state_dict(), strict=False)
    assert not missing and all(key.startswith('idm.') for key in unexpected)
    x = images(3)
    with torch.no_grad():
        torch.testing.assert_close(idm_model(x), encoder(x))


def test_stage_out_of_range():
    model = build_idm().train()
    for stage in (4, -1):
        with pytest.raises(ValueError, match=f'stage={stage}: MSINet mixes after the stem'):
            model(images(2 * N), stage=stage)
    with pytest.raises(ValueError):
        idm_bn_names(4)


@pytest.mark.parametrize('stage', range(4))
def test_idm_bn_conversion_selects_the_layers_after_the_mixing_point(stage):
    """3-way BN exactly where the batch holds source, target and mixed features."""
    names = idm_bn_names(stage)
    assert set(names) == set(filter_layers(stage)) - {'layer4'}  # train_idm.py unchanged
    for tokens in (names, filter_layers(stage)):
        model = build_idm(num_features=0, num_classes=6)
        before = batch_norms(model)
        convert_dsbn_idm(model, tokens)
        after = tuple(f'base.cells.layer{k}.' for k in range(stage + 1, 4)) + ('feat_bn',)
        converted = {name: m for name, m in model.named_modules() if isinstance(m, DomainBN)}
        assert converted.keys() == before.keys()
        for name, module in converted.items():
            assert module.ways == (3 if name.startswith(after) else 2), name
        model.train()(images(2 * N), stage=stage)[0].sum().backward()
        for name, module in converted.items():
            assert module.seen == [module.ways * N], name


def test_naive_index_names_would_misfire():
    """Why the stages are named: selecting MSINet's cell 3 by its index name also hits
    ``conv3a``/``conv3b`` of every other cell."""
    model = MSINet(1, 'msinet')
    convert_dsbn_idm(model.cells, ['3'])
    hit = {name for name, m in model.cells.named_modules()
           if isinstance(m, DomainBN) and m.ways == 3}
    assert any(not name.startswith('3.') for name in hit)


# ---------------------------------------------------------------- the launcher

@pytest.fixture
def run_launcher(tmp_path, monkeypatch):
    """``examples/run_with_msinet.py``'s main; sys.argv, sys.path and the modules
    imported from ``tmp_path`` are restored afterwards."""
    monkeypatch.setattr(sys, 'argv', list(sys.argv))
    monkeypatch.setattr(sys, 'path', list(sys.path))
    yield load_script('examples/run_with_msinet.py').main
    for name, module in list(sys.modules.items()):
        if str(getattr(module, '__file__', None) or '').startswith(str(tmp_path)):
            del sys.modules[name]


def write_project(root, package, script, lines):
    """A checkout of ``package`` (one ResNet in its ``models.__factory``) and ``script``."""
    (root / package / 'models').mkdir(parents=True)
    (root / package / '__init__.py').write_text('')
    (root / package / 'models' / '__init__.py').write_text(
        'def resnet50(**kwargs):\n'
        '    raise NotImplementedError\n'
        '__factory = {"resnet50": resnet50}\n'
        'def create(name, *args, **kwargs):\n'
        '    return __factory[name](*args, **kwargs)\n')
    (root / script).parent.mkdir(parents=True, exist_ok=True)
    (root / script).write_text('\n'.join(lines) + '\n')


def test_launcher_registers_into_the_projects_factory(tmp_path, monkeypatch, capsys,
                                                      run_launcher):
    """An installed SpCL-style project: its script gets SpCL's encoder."""
    write_project(tmp_path, 'fakereid', 'train.py', [
        'import sys',
        'from fakereid import models',
        'model = models.create(sys.argv[1], pretrained=False, num_features=0, norm=True)',
        'print(type(model).__name__, model.num_features)',
    ])
    monkeypatch.syspath_prepend(str(tmp_path))
    run_launcher(['fakereid', str(tmp_path / 'train.py'), 'msinet'])
    assert capsys.readouterr().out == 'MSINetEncoder 768\n'


def test_launcher_runs_an_idm_script_from_its_checkout(tmp_path, monkeypatch, capsys,
                                                       run_launcher):
    """IDM has no setup.py: run from its checkout, its scripts append "." to sys.path
    themselves, after the launcher has imported ``idm.models``. The baseline script's
    trainer unpacks two outputs; it never passes ``pretrained``."""
    write_project(tmp_path, 'idm', 'examples/train_baseline.py', [
        'import sys',
        'import torch',
        'sys.path.append(".")',
        'from idm import models',
        'model = models.create(sys.argv[1], num_features=0, norm=False, dropout=0, '
        'num_classes=4)',
        f'prob, feats = model.train()(torch.randn({2 * N}, 3, {HEIGHT}, {WIDTH}))',
        'print(type(model).__name__, tuple(prob.shape), tuple(feats.shape))',
    ])
    monkeypatch.chdir(tmp_path)
    # As under `python run_with_msinet.py`: the working directory is not on sys.path.
    sys.path[:] = [path for path in sys.path if path not in ('', '.', str(tmp_path))]
    with pytest.warns(UserWarning, match='msinet_vr: no ImageNet weights are published'):
        run_launcher(['idm', 'examples/train_baseline.py', 'msinet_vr'])
    assert capsys.readouterr().out == f'MSINetIDMEncoder ({2 * N}, 4) ({2 * N}, 768)\n'


def test_launcher_outside_a_checkout_says_where_to_run(tmp_path, monkeypatch, run_launcher):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match='cannot import nosuchreid.models .*run this launcher '
                                         'from the root of your nosuchreid checkout'):
        run_launcher(['nosuchreid', 'train.py'])


def test_unknown_arch():
    with pytest.raises(KeyError, match="unknown MSINet 'resnet50': use one of .*msinet_vr"):
        MSINetEncoder('resnet50', pretrained=False)
