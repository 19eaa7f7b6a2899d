"""`python -m ibtasks ...` runs the command line."""

import sys

from ibtasks.cli.entry import main

sys.exit(main())
