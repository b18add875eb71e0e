"""The synthetic-room generator behind ``ssen generate``: furniture models, room layouts, a
simulated robot scan, and scenes written as ScanNet folders (a stand-in for ScanNet, which cannot
be downloaded here). Needs the ``synthetic`` extra; nothing at run time imports it."""
