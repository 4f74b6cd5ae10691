"""``python -m msinet_reid.integrations.boxmot ARGS``: boxmot's CLI with MSINet registered."""
from . import main

main()
