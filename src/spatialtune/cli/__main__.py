"""`python -m spatialtune.cli …` (as `accelerate launch -m spatialtune.cli train …` calls it)."""

import sys

from . import main

sys.exit(main())
