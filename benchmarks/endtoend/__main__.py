"""``python -m benchmarks.endtoend``: the stand-alone end-to-end tool (:mod:`.tool`)."""

import sys

from benchmarks.endtoend.tool import main

sys.exit(main())
