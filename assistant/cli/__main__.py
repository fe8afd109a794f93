"""`python -m assistant.cli` == the `onboard` console script."""
import sys

from assistant.cli import main

sys.exit(main())
