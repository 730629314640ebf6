import sys

from egain.cli.main import main

sys.exit(main())
