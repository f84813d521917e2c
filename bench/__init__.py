"""Benchmarks of nirunner, measured side by side with a hand-made floor and with CNI.

    python -m bench.run [--quick]      (root; `make bench` installs what it needs)
"""
