"""The README says what the code does: its commands and its model table."""
import re
from pathlib import Path

import msinet_reid.models

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()


def test_ci_runs_the_readme_test_command_first():
    commands = [line for line in (ROOT / '.ci' / 'run').read_text().splitlines()
                if line.strip() and not line.startswith(('#', 'set ', 'cd '))]
    assert f'```bash\n{commands[0]}\n```' in README


def test_model_table_parameter_counts():
    rows = re.findall(r'^\| `(\w+)`.*?\| ([\d,]+) \| (\d+) \|', README, flags=re.M)
    assert {name for name, _, _ in rows} == {'msinet', 'msinet_vr', 'msinet_s', 'msinet_sam'}
    for name, params, feature_dim in rows:
        model = getattr(msinet_reid.models, name)(751, pretrained=False)
        counted = sum(p.numel() for k, p in model.named_parameters() if 'classifier' not in k)
        assert f'{counted:,}' == params, name
        assert model.feature_dim == int(feature_dim)
