import sys

from policygen.cli import main

sys.exit(main())
