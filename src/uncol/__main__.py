"""``python -m uncol`` (also what ``torchrun -m uncol`` runs)."""
import sys

from uncol.cli import main

sys.exit(main())
