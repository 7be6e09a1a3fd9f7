"""Where the running environment departs from constraints.txt: one line per package,
"package: pinned X, installed Y" (or "not installed", or "not pinned"), for the `make test-latest` job.

`--check` also asserts the versions issue #16 turned on: torchattacks < 3.4 (3.4 and 3.5 pin
requests~=2.25.1) and requests >= 2.32; it exits 1, naming them, when either does not hold.
"""

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version):
    """(3, 4, 0) from "3.4.0", "3.4.0rc1" or "2.13.0+cpu": enough to compare against a floor or a cap."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0].split("rc")[0])[:3])


def pins(path):
    found = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[canonical(name.split("[")[0])] = (name.strip(), version.strip())
    return found


def installed():
    found = {}
    for dist in metadata.distributions():  # sys.path order: the first of a name is the one imported
        if dist.metadata["Name"]:
            found.setdefault(canonical(dist.metadata["Name"]), dist.version)
    return found


def differences(constraints):
    have = installed()
    lines = []
    for key, (name, pinned) in sorted(pins(constraints).items()):
        version = have.get(key)
        if version is None:
            lines.append(f"{name}: pinned {pinned}, not installed")
        elif version.split("+")[0] != pinned.split("+")[0]:  # 2.13.0+cpu is the pinned 2.13.0
            lines.append(f"{name}: pinned {pinned}, installed {version}")
    unpinned = set(have) - set(pins(constraints)) - {"layerlth", "pip", "setuptools"}
    lines += [f"{key}: not pinned, installed {have[key]}" for key in sorted(unpinned)]
    return lines


def check():
    """The versions that matter, as failure messages (none when they hold)."""
    have = installed()
    failures = []
    torchattacks, requests = have.get("torchattacks"), have.get("requests")
    if torchattacks is None or release(torchattacks) >= (3, 4):
        failures.append(f"torchattacks {torchattacks}: need < 3.4 (3.4 and 3.5 pin requests~=2.25.1)")
    if requests is None or release(requests) < (2, 32):
        failures.append(f"requests {requests}: need >= 2.32")
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constraints", default=str(ROOT / "constraints.txt"))
    parser.add_argument("--check", action="store_true", help="also assert torchattacks < 3.4, requests >= 2.32")
    args = parser.parse_args(argv)
    have = installed()
    print("resolved: " + ", ".join(f"{n} {have.get(n)}" for n in ("torch", "torchvision", "torchattacks", "requests")))
    lines = differences(args.constraints)
    print(f"{len(lines)} package(s) differ from {Path(args.constraints).name}" + (":" if lines else ""))
    for line in lines:
        print("  " + line)
    failures = check() if args.check else []
    for failure in failures:
        print("FAILED: " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
