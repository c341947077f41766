"""A text corpus built from the Python standard library's own documentation (see jaxla.datasets).

Every Python installation carries its documentation inside its modules: :func:`stdlib_docs` makes
one document per standard-library module from the module's docstring and the docstrings of its
public functions and classes. Nothing is downloaded and nothing is stored in the package; the text
is real English prose about compression, networking, dates, concurrency, testing, ... and its
topics are known from the module names, which makes it a good corpus for latent semantic
analysis and retrieval examples. The exact text depends on the Python version.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from jaxla import _checks

__all__ = ["STDLIB_MODULES", "stdlib_docs"]

_FN = "jaxla.datasets.stdlib_docs"

STDLIB_MODULES: tuple[str, ...] = (
    # compression and archives
    "zlib", "gzip", "bz2", "lzma", "zipfile", "tarfile", "zipimport", "shutil",
    # data formats and persistence
    "json", "csv", "configparser", "tomllib", "plistlib", "pickle", "shelve", "marshal", "dbm",
    "sqlite3", "base64", "binascii", "quopri",
    # text
    "re", "string", "textwrap", "difflib", "unicodedata", "codecs", "locale", "gettext",
    # networking and internet protocols
    "socket", "ssl", "select", "selectors", "http.client", "http.server", "http.cookies",
    "http.cookiejar", "urllib.request", "urllib.parse", "urllib.robotparser", "ftplib", "poplib",
    "imaplib", "smtplib", "socketserver", "ipaddress", "xmlrpc.client", "xmlrpc.server", "email",
    "email.message", "email.utils", "mimetypes", "mailbox", "webbrowser", "uuid",
    # markup
    "html", "html.parser", "xml.etree.ElementTree", "xml.dom.minidom", "xml.sax",
    # numbers
    "math", "cmath", "statistics", "random", "decimal", "fractions", "numbers",
    # dates and times
    "datetime", "calendar", "time", "zoneinfo",
    # concurrency
    "threading", "asyncio", "subprocess", "multiprocessing", "concurrent.futures", "queue",
    "sched", "signal",
    # files and the operating system
    "os", "os.path", "pathlib", "glob", "fnmatch", "tempfile", "filecmp", "stat", "io",
    "fileinput", "linecache",
    # cryptography
    "hashlib", "hmac", "secrets",
    # testing, debugging and profiling
    "unittest", "doctest", "pdb", "timeit", "cProfile", "profile", "trace", "traceback",
    "faulthandler", "tracemalloc",
    # logging and command lines
    "logging", "argparse", "getopt", "getpass", "shlex", "cmd",
    # objects, copying and printing
    "copy", "pprint", "reprlib",
    # functional programming and containers
    "itertools", "functools", "operator", "collections", "heapq", "bisect", "array", "weakref",
    "types", "enum", "dataclasses", "abc", "contextlib", "typing",
    # the language and the interpreter
    "inspect", "ast", "dis", "tokenize", "keyword", "importlib", "pkgutil", "sys", "gc",
    "warnings", "atexit", "platform", "sysconfig", "struct", "ctypes", "mmap",
    # miscellaneous
    "wave", "colorsys", "graphlib", "tkinter",
)
"""The default modules of :func:`stdlib_docs` (146 names, grouped by topic), in corpus order.

Modules that cannot be imported on a given machine (``tkinter`` without Tk, ``sqlite3`` on a build
without SQLite, ...) are left out of the default corpus.
"""


def _doc(obj: Any) -> str:
    """The object's own docstring, dedented (inherited class docstrings are not used)."""
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc).strip() if isinstance(doc, str) else ""


def _module_text(module: ModuleType) -> str:
    """The module docstring, then the docstrings of its public functions and classes by name."""
    name = module.__name__
    owners = {name, "_" + name.rsplit(".", 1)[-1], "_" + name}  # C accelerators: _heapq, _json
    exported = set(getattr(module, "__all__", ()) or ())
    parts = [_doc(module)]
    seen = set(parts)
    for attr in sorted(vars(module)):
        obj = vars(module)[attr]
        if attr.startswith("_") or not (inspect.isroutine(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) not in owners and attr not in exported:
            continue
        doc = _doc(obj)
        if doc and doc not in seen:
            seen.add(doc)
            parts.append(doc)
    return "\n\n".join(p for p in parts if p)


@functools.cache
def _load(modules: tuple[str, ...], strict: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names: list[str] = []
    texts: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        for name in modules:
            try:
                module = importlib.import_module(name)
            except Exception as e:  # missing optional module (ImportError) or broken build
                if strict:
                    _checks.fail(
                        _FN,
                        f"`modules` must name importable modules, got {name!r} "
                        f"({type(e).__name__}: {e})",
                    )
                continue
            text = _module_text(module)
            if not text:
                if strict:
                    _checks.fail(_FN, f"`modules` must name documented modules, got {name!r} "
                                      "(no docstrings)")
                continue
            names.append(name)
            texts.append(text)
    return tuple(names), tuple(texts)


def stdlib_docs(modules: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """One document per Python standard-library module, made of its docstrings.

    A module's document is its module docstring followed by the docstrings of its public
    functions and classes (those defined in the module, in its C accelerator ``_name``, or listed
    in its ``__all__``), in alphabetical order of their names, dedented, duplicates dropped and
    separated by blank lines. Methods and inherited class docstrings are not included.
    ``DeprecationWarning``s raised while importing are suppressed. The result is deterministic
    for a given Python installation (the text changes between Python versions).

    Args:
        modules: module names (``"zlib"``, ``"http.client"``, ...). None (the default) uses
            :data:`STDLIB_MODULES` (146 modules) and silently leaves out those that cannot be
            imported on this machine or have no docstrings. A module given explicitly must
            import and be documented.

    Returns:
        ``(names, texts)``: two lists of ``n_docs`` strings, the module names in the order
        given and their documents.

    Raises:
        ValueError: an explicitly named module that cannot be imported or has no docstrings; an
            empty ``modules``.
        TypeError: ``modules`` not a sequence of strings.

    Examples:
        >>> from jaxla.datasets import stdlib_docs
        >>> names, texts = stdlib_docs(["zlib", "json"])
        >>> names
        ['zlib', 'json']
        >>> "compress" in texts[0].lower() and "JSON" in texts[1]
        True
        >>> len(stdlib_docs()[0]) >= 140
        True
    """
    if modules is None:
        return _to_lists(_load(STDLIB_MODULES, strict=False))
    if isinstance(modules, str) or not isinstance(modules, Sequence):
        _checks.fail(
            _FN, f"`modules` must be a sequence of module names, got {modules!r}", TypeError
        )
    for m in modules:
        if not isinstance(m, str):
            _checks.fail(_FN, f"`modules` must contain strings, got {m!r}", TypeError)
    if len(modules) == 0:
        _checks.fail(_FN, "`modules` must name at least one module, got an empty sequence")
    return _to_lists(_load(tuple(modules), strict=True))


def _to_lists(pair: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple[list[str], list[str]]:
    """Fresh lists from the cached tuples (callers may mutate what they get)."""
    return list(pair[0]), list(pair[1])
