"""Write BENCHMARKS.md from the JSON results (run by `make bench` after the benchmarks)."""

from __future__ import annotations

from bench.common import REPORT, render_report


def main() -> None:
    REPORT.write_text(render_report())
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
