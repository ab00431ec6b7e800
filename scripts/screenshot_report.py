"""Render a report.html to a PNG with headless Chromium, to eyeball the layout without a desktop browser.

Usage: python scripts/screenshot_report.py runs/smoke/report.html [--out report.png] [--width 1280] [--height 2000]
Needs Chromium on PATH (Debian: `sudo apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str:
    """Path of a Chromium/Chrome binary on PATH; exits with install advice when there is none."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    sys.exit(
        f"error: no Chromium found on PATH (looked for {', '.join(CHROMIUM_NAMES)}).\n"
        "Install it, e.g. on Debian/Ubuntu: sudo apt-get install -y chromium"
    )


def screenshot(report: Path, out: Path, width: int = 1280, height: int = 2000, timeout_s: float = 60) -> Path:
    """Save a `width`×`height` screenshot of the page at `report` (a local file) to `out`."""
    if not report.is_file():
        sys.exit(f"error: {report} does not exist; write a report first (spatialtune.viz.report.write_report).")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        find_chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # needed when running as root or in containers
        "--hide-scrollbars",
        f"--screenshot={out.resolve()}",
        f"--window-size={width},{height}",
        report.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0 or not out.is_file():
        sys.exit(f"error: chromium failed (exit {result.returncode}):\n{' '.join(command)}\n{result.stderr[-2000:]}")
    return out


def main() -> None:
    """Parse arguments and take the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="path to report.html")
    parser.add_argument("--out", type=Path, help="PNG to write (default: report.png beside the report)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args()
    out = args.out or args.report.with_suffix(".png")
    print(screenshot(args.report, out, args.width, args.height))


if __name__ == "__main__":
    main()
