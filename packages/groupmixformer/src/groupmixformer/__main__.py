"""``python -m groupmixformer`` (used under ``torchrun -m``)."""

import sys

from groupmixformer.cli import main

sys.exit(main())
