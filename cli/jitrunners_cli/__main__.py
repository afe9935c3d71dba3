import sys

from jitrunners_cli.main import main

sys.exit(main())
