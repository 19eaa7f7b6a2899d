"""`python -m ibtasks ...` runs the command line."""

import sys

from ibtasks.entry import main

sys.exit(main())
