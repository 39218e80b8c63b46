import sys

from cryokit.cli import main

sys.exit(main())
