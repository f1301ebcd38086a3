import sys

from swedge.cli import main

sys.exit(main())
