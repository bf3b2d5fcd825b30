import sys

from rbr_agent.cli import main

sys.exit(main())
