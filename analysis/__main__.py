"""`python -m analysis report RUN_DIR [--out DIR]`, `python -m analysis compare A B [--out DIR]`."""

import argparse
import sys
from collections.abc import Sequence

from analysis.judge.transform import MissingColumnError
from analysis.load.run import RunFormatError
from analysis.report.build import write_report
from analysis.report.compare import write_compare


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one sub-command per output."""
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="write RUN_DIR/report.md, report.html and charts/")
    report.add_argument("run_dir", help="a results/<run-id> folder")
    report.add_argument("--out", help="output folder (default: the run folder itself)")
    report.add_argument(
        "--reference",
        default="results/reference",
        help="run whose machine calibration this one is compared with (default: %(default)s; "
        "'' for none)",
    )
    report.add_argument(
        "--no-charts",
        action="store_true",
        help="write the text only (report.md, report.html), drawing no chart: fast",
    )
    compare = sub.add_parser("compare", help="how each cell changed from run A to run B")
    compare.add_argument("run_a", help="the baseline run folder")
    compare.add_argument("run_b", help="the run compared against it")
    compare.add_argument("--out", help="output folder (default: B/compare-vs-<A name>/)")
    for p in (report, compare):
        p.add_argument(
            "--noise",
            type=float,
            default=None,
            help="one noise threshold for every scenario, e.g. 0.15 (default: measured per "
            "scenario from the run's own repeat spread)",
        )
    return parser


def warn_incomplete(problems: Sequence[str]) -> None:
    """What a run lacks, on stderr too: the report's banner is not the only place it shows."""
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a bad run folder prints one clear line and exits 2."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "report":
            files = write_report(
                args.run_dir,
                args.noise,
                args.out,
                args.reference or None,
                draw=not args.no_charts,
            )
            warn_incomplete(files.incomplete)
            extra = "".join(f", {path}" for path in files.files)
            print(f"wrote {files.markdown}, {files.html}{extra} and {len(files.charts)} charts")
        else:
            out = write_compare(args.run_a, args.run_b, args.out, args.noise)
            warn_incomplete(out.incomplete)
            print(f"wrote {out.markdown}, {out.html}, {out.csv} and {out.chart}")
    except (RunFormatError, MissingColumnError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
