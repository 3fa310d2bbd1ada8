"""Command-line helpers of `splitleak` (splitleak/cli.py): argparse options and the commands
that parse them into library calls. The library itself never imports argparse.
"""
