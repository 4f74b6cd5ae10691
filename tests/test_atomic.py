"""Atomic writes leave a whole file with the permissions a plain write would give it."""
import stat

import pytest

from msinet_reid.atomic import atomic_write


def test_an_atomic_file_has_the_mode_open_gives(tmp_path):
    (tmp_path / 'plain.txt').write_text('x')
    written = atomic_write(tmp_path / 'atomic.txt', lambda tmp: tmp.write_text('x'))
    mode = stat.S_IMODE(written.stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / 'plain.txt').stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['atomic.txt', 'plain.txt']


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / 'file.txt'
    target.write_text('old')

    def fail(tmp):
        tmp.write_text('half')
        raise RuntimeError('disk full')

    with pytest.raises(RuntimeError, match='disk full'):
        atomic_write(target, fail)
    assert target.read_text() == 'old' and [p.name for p in tmp_path.iterdir()] == ['file.txt']
