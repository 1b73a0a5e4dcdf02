"""Check that this environment holds exactly the versions a constraints file pins, and print them.

Usage: ``python requirements/check_installed.py requirements/lowest.txt`` (``make lowest`` runs it after the
install, so a pin pip silently did not honour fails the target instead of going untested).
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement


def main(path: str) -> int:
    bad = []
    for line in open(path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        try:
            have = version(req.name)
        except PackageNotFoundError:
            have = None
        ok = have is not None and req.specifier.contains(have, prereleases=True)
        print(f"{'ok ' if ok else 'BAD'} {req.name:<28} {have or 'missing':<14} (pinned {req.specifier})")
        if not ok:
            bad.append(req.name)
    torch = version("torch") if _has("torch") else "missing"
    print(f"    {'torch':<28} {torch:<14} (named in the install command)")
    if bad:
        print(f"not as pinned: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def _has(name: str) -> bool:
    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
