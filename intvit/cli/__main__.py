"""``python -m intvit.cli``: the ``intvit`` command."""
import sys

from . import main

sys.exit(main())
