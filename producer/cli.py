"""The vcam-producer command line."""

import argparse
import sys

EXAMPLES = """\
examples:
  vcam-producer --version
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="vcam-producer",
        description="Turn frames into a vcam virtual camera, and check what a consumer receives.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="%(prog)s 0.1.0")
    return parser


def main(argv=None):
    parser = build_parser()
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
