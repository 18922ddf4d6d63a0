"""`python -m cli COMMAND ...`: the same as `cifar10-tfx COMMAND ...`."""
import sys

from cli.main import main

sys.exit(main())
