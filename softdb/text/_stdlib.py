"""The Python standard library's docstrings as a corpus (the demo's default)."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import sys
import warnings
from types import ModuleType

from softdb.text._corpus import Corpus

__all__ = ["stdlib_corpus"]

MAX_CHARS = 300  # texts are capped here: MiniLM reads ~256 tokens, and speed matters

# GUI, interactive, test, packaging or side-effect modules: never imported.
_SKIP_MODULES = frozenset(
    {
        "__main__",
        "antigravity",
        "this",
        "idlelib",
        "tkinter",
        "turtle",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "test",
        "pydoc_data",
        "encodings",
        "distutils",
        "msilib",
        "winreg",
        "winsound",
        "msvcrt",
        "nt",
        "posix",
        "sre_compile",
        "sre_constants",
        "sre_parse",
        "xxsubtype",
        "xxlimited",
        "xxlimited_35",
        "posixpath",
        "ntpath",
        "genericpath",
        "macpath",
        "nturl2path",
        "opcode",
        "sre",
        "imp",
        "asynchat",
        "asyncore",
        "smtpd",
        # deprecated by PEP 594 (removed in 3.13)
        "aifc",
        "audioop",
        "cgi",
        "cgitb",
        "chunk",
        "crypt",
        "imghdr",
        "mailcap",
        "nis",
        "nntplib",
        "ossaudiodev",
        "pipes",
        "sndhdr",
        "spwd",
        "sunau",
        "telnetlib",
        "uu",
        "xdrlib",
    }
)
# public submodules with their own entries; a package also gets what it re-exports
# from its own submodules (asyncio.run, json.JSONDecodeError)
_SUBMODULES = (
    "collections.abc",
    "concurrent.futures",
    "email.message",
    "email.utils",
    "html.parser",
    "http.client",
    "http.cookiejar",
    "http.cookies",
    "http.server",
    "importlib.metadata",
    "importlib.resources",
    "importlib.util",
    "logging.config",
    "logging.handlers",
    "os.path",
    "unittest.mock",
    "urllib.error",
    "urllib.parse",
    "urllib.request",
    "urllib.robotparser",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "xml.sax",
)
# low-level or specialist modules: their module entry only, no members (keeps the
# corpus near 1,500 texts, what MiniLM encodes in well under a minute on 2 cores)
_NO_MEMBERS = frozenset(
    {
        "bdb",
        "binascii",
        "cProfile",
        "cmath",
        "code",
        "codecs",
        "codeop",
        "compileall",
        "ctypes",
        "curses",
        "dis",
        "doctest",
        "errno",
        "faulthandler",
        "fcntl",
        "gc",
        "grp",
        "locale",
        "marshal",
        "mmap",
        "operator",
        "pdb",
        "pickletools",
        "pkgutil",
        "platform",
        "profile",
        "pstats",
        "pty",
        "pwd",
        "py_compile",
        "pyclbr",
        "pyexpat",
        "readline",
        "resource",
        "select",
        "signal",
        "site",
        "socket",
        "ssl",
        "stat",
        "symtable",
        "sysconfig",
        "tabnanny",
        "termios",
        "token",
        "tokenize",
        "trace",
        "tracemalloc",
        "tty",
        "typing",
        "unicodedata",
    }
)
# implementation modules whose objects are documented under a public module
_PRIVATE_HOMES = frozenset({"posix", "nt", "builtins", "genericpath"})


def _quiet_import(name: str) -> ModuleType | None:
    """Import a module, or None if it fails, exits or prints while importing."""
    if name in sys.modules:
        return sys.modules[name]
    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except (Exception, SystemExit):  # noqa: BLE001 - importing any stdlib module may raise anything: skip it
        return None
    if out.getvalue() or err.getvalue():
        return None
    return module


def _public(name: str) -> bool:
    return not name.startswith("_")


def _module_names() -> list[str]:
    tops = [m for m in sys.stdlib_module_names if _public(m) and m not in _SKIP_MODULES]
    return sorted(set(tops) | set(_SUBMODULES))


def _summary(doc: str) -> str:
    return " ".join(doc.split("\n\n", 1)[0].split())


def _text(dotted: str, doc: str) -> str:
    text = f"{dotted}: {doc}"
    if len(text) > MAX_CHARS:
        cut = text[:MAX_CHARS]
        text = cut[: cut.rfind(" ")] if " " in cut[MAX_CHARS // 2 :] else cut
        text = text.rstrip() + " …"
    return text


def _exported(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        names = [n for n in vars(module) if _public(n)]
    return sorted({n for n in names if _public(n)})


def _belongs(obj: object, modname: str, realname: str) -> bool:
    """Is `obj` documented under module `modname` (and worth an entry)?"""
    home = getattr(obj, "__module__", None) or ""
    if inspect.isclass(obj):
        if issubclass(obj, BaseException) and modname != "builtins":
            return False  # module-specific exceptions: many, and rarely searched for
        if modname == "ast" and issubclass(obj, ast.AST):
            return False  # ~130 syntax-node classes with one-line docstrings
    if home == "builtins":
        return modname == "builtins"
    if home in (modname, realname) or home.startswith(modname + "."):
        return True  # defined here, or re-exported from this package's own submodule
    return home.startswith("_") or home in _PRIVATE_HOMES  # from an implementation module


def stdlib_corpus() -> Corpus:
    """Docstrings of the running interpreter's public standard library.

    One entry per public top-level stdlib module (``sys.stdlib_module_names``) and
    per well-known public submodule (``urllib.parse``, ``os.path``, ...); one per
    public class and function with its own docstring that the module defines, or
    re-exports from its own submodules or from an implementation module (``_io``,
    ``posix``). Left out: test, GUI, packaging, deprecated and side-effect modules;
    members of low-level modules (``socket``, ``operator``, ...); exceptions outside
    ``builtins``; ``ast`` node classes; any module that fails or prints while
    importing (imports are silenced, warnings suppressed). About 1,500 entries,
    loaded in well under a second when the modules import quickly.

    Returns
    -------
    Corpus
        ids are dotted names sorted as modules then members (e.g.
        ``"argparse.ArgumentParser"``); a text is ``"<id>: <cleaned docstring>"``
        capped at about 300 characters; a payload is
        ``{"module": str, "kind": "module" | "class" | "function", "summary": str}``
        where summary is the docstring's first paragraph.

    Examples
    --------
    >>> c = stdlib_corpus()
    >>> "argparse.ArgumentParser" in c.ids
    True
    >>> c.payloads[c.ids.index("json.dumps")]["module"]
    'json'
    """
    ids: list[str] = []
    texts: list[str] = []
    payloads: list[dict[str, str]] = []
    seen: set[int] = set()
    for modname in _module_names():
        module = _quiet_import(modname)
        if module is None:
            continue
        entries: list[tuple[str, str, str]] = []  # (dotted, kind, doc)
        doc = inspect.getdoc(module)
        if doc and id(module) not in seen:
            seen.add(id(module))
            entries.append((modname, "module", doc))
        for attr in [] if modname in _NO_MEMBERS else _exported(module):
            try:
                obj = getattr(module, attr)
            except Exception:  # noqa: BLE001 - a module attribute may raise anything when read: skip it
                continue
            if not (inspect.isclass(obj) or inspect.isroutine(obj)) or id(obj) in seen:
                continue
            if not _belongs(obj, modname, module.__name__):
                continue
            doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
            if not isinstance(doc, str) or not doc.strip():
                continue
            seen.add(id(obj))
            kind = "class" if inspect.isclass(obj) else "function"
            entries.append((f"{modname}.{attr}", kind, inspect.cleandoc(doc)))
        for dotted, kind, doc in entries:
            ids.append(dotted)
            texts.append(_text(dotted, doc))
            payloads.append({"module": modname, "kind": kind, "summary": _summary(doc)})
    return Corpus(ids, texts, payloads)
