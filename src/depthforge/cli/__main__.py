import sys

from depthforge.cli import main

sys.exit(main())
