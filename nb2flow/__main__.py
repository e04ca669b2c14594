import sys

from nb2flow.cli import main

sys.exit(main())
