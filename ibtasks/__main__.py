"""`python -m ibtasks ...` runs the command line."""

import sys

from ibtasks.cli import main

sys.exit(main())
