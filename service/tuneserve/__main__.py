import sys

from tuneserve.server import main

sys.exit(main())
