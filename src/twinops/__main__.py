import sys

from twinops.cli import main

sys.exit(main())
