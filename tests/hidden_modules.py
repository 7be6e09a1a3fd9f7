"""Python source that makes some top-level packages unimportable, as on a bare GPU machine: run it
first in a subprocess (`python -c`, or as a sitecustomize.py that every process of a run loads)."""


def blocker(names):
    return f"""
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {tuple(names)!r}:
            raise ImportError(name + " is not installed on this machine")
sys.meta_path.insert(0, Hide())
"""
