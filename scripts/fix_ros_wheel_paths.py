#!/usr/bin/env python3
"""Point the ROS 2 wheels' CMake exports at this machine's Python and NumPy headers.

Why: the ``ros-jazzy-*`` message wheels were built in a manylinux container, and their exported CMake
targets (``export_<pkg>__rosidl_generator_pyExport.cmake``) name that container's include paths, e.g.
``/opt/python/cp311-cp311/include/python3.11`` and
``/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include``. CMake refuses a target
whose include directory does not exist, so building any interface package that depends on those
messages fails. Creating ``/opt/python`` would need root; rewriting the exports inside the venv does not,
and is repeatable: running this again changes nothing.

Usage: ``fix_ros_wheel_paths.py <venv prefix>`` (run with the venv's interpreter).
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

# The manylinux interpreter prefix baked into the wheels: /opt/python/cp311-cp311, cp312-cp312, ...
BAKED_PREFIX = re.compile(r"/opt/python/cp3\d+-cp3\d+")
BAKED_PYTHON_INCLUDE = re.compile(BAKED_PREFIX.pattern + r"/include/python3\.\d+")
BAKED_NUMPY_INCLUDE = re.compile(BAKED_PREFIX.pattern + r"/lib/python3\.\d+/site-packages/numpy/_core/include")


def local_include_dirs() -> tuple[str, str]:
    """Return this interpreter's C include directory and NumPy's include directory."""
    import numpy  # imported here: the script must still print a clear error if NumPy is missing

    return sysconfig.get_paths()["include"], numpy.get_include()


def fix_file(path: Path, python_include: str, numpy_include: str) -> bool:
    """Rewrite one CMake file; return True if it changed."""
    text = path.read_text(encoding="utf-8")
    fixed = BAKED_NUMPY_INCLUDE.sub(numpy_include, text)
    fixed = BAKED_PYTHON_INCLUDE.sub(python_include, fixed)
    if fixed == text:
        return False
    path.write_text(fixed, encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(f"usage: {argv[0]} <venv prefix>\n")
        return 2
    share = Path(argv[1]) / "share"
    if not share.is_dir():
        sys.stderr.write(f"error: {share} does not exist; is {argv[1]} a venv with the ROS wheels?\n")
        return 2
    try:
        python_include, numpy_include = local_include_dirs()
    except ImportError:
        sys.stderr.write("error: NumPy is not installed in this interpreter; install requirements first\n")
        return 2
    if not Path(python_include, "Python.h").is_file():
        sys.stderr.write(f"error: {python_include}/Python.h missing; install the Python headers (python3-dev)\n")
        return 2
    changed = [p for p in share.glob("*/cmake/*.cmake") if fix_file(p, python_include, numpy_include)]
    left = [p for p in share.glob("*/cmake/*.cmake") if BAKED_PYTHON_INCLUDE.search(p.read_text(encoding="utf-8"))]
    print(f"fix_ros_wheel_paths: {len(changed)} CMake export(s) rewritten, {len(left)} still baked")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
