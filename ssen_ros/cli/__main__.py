import sys

from ssen_ros.cli import main

sys.exit(main())
