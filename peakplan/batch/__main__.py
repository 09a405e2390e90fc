"""``python -m peakplan.batch ARGS`` = ``peakplan batch ARGS``."""

import sys

from peakplan.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
