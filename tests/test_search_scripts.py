"""The search example and the search benchmark run end to end on tiny settings."""

from msinet_reid.data import make_market1501
from msinet_reid.genotypes import GENOTYPES
from msinet_reid.search import SEARCH_OPS, load_genotype

from helpers import load_script


def test_search_example_searches_then_trains_the_genotype(tmp_path, capsys):
    make_market1501(tmp_path, num_train_ids=8, num_test_ids=10, images_per_camera=2,
                    num_cameras=2, height=64, width=32, progress=False)
    save_dir = tmp_path / 'log'
    genotype_file = load_script('examples/search.py').main([
        '--root', str(tmp_path), '--dataset', 'market1501', '--epochs', '1',
        '--batch-size', '8', '--height', '64', '--width', '32', '--workers', '0',
        '--device', 'cpu', '--save-dir', str(save_dir), '--train-epochs', '1',
    ])
    assert genotype_file == save_dir / 'genotype.json'
    genotype = ' '.join(load_genotype(genotype_file))
    output = capsys.readouterr().out
    assert f'Searched genotype: {genotype}' in output
    assert (save_dir / 'train' / 'model' / 'model.pth.tar-1').is_file()  # torchreid trained it


def test_search_benchmark_quick_mode(capsys):
    results = load_script('benchmarks/search_step.py').main(['--quick', '--device', 'cpu'])
    assert results['search_time'] > 0 and results['fixed_time'] > 0
    output = capsys.readouterr().out
    assert 'TCM search iteration' in output and 'MSINet training step' in output


def test_search_quality_quick_mode(capsys):
    benchmark = load_script('benchmarks/search_quality.py')
    results = benchmark.main(['--quick', '--random', '1', '--device', 'cpu'])
    assert list(results) == ['found (tcm)', 'msinet (Table 1)', 'random 1']
    assert results['msinet (Table 1)']['genotype'] == list(GENOTYPES['msinet'])
    for result in results.values():
        assert len(result['genotype']) == 12 and set(result['genotype']) <= set(SEARCH_OPS)
        assert len(result['mAP']) == len(result['rank1']) == 1  # one seed
        assert 0 < result['mAP'][0] <= 1
    output = capsys.readouterr().out
    assert 'found (tcm): rank ' in output and 'L2-normalised features' in output


def test_search_quality_ranks_and_random_genotypes():
    benchmark = load_script('benchmarks/search_quality.py')
    assert benchmark.rank_among(0.5, [0.6, 0.4, 0.5]) == 2  # ties do not push it down
    assert benchmark.rank_among(0.7, [0.6, 0.4]) == 1
    drawn = benchmark.random_genotypes(50, seed=3)
    assert drawn == benchmark.random_genotypes(50, seed=3) != benchmark.random_genotypes(50, 4)
    assert {op for genotype in drawn for op in genotype} == set(SEARCH_OPS)
