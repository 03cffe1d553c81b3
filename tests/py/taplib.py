# SPDX-License-Identifier: MIT
"""A tiny TAP producer for pycds's Python-level tests.

    t = Tap(3)                    # prints the plan "1..3"
    t.ok(cond, "what", diag)      # "ok 1 - what" / "not ok 1 - what" + diag
    t.eq(got, want, "what")       # ok() with a got/want diagnostic
    t.skip("what", "why")         # "ok 2 - what # SKIP why"
    t.todo(cond, "what", "why")   # "not ok 3 - what # TODO why" (not fatal)
    t.diag("text")                # "# text" lines
    Tap.skip_all("why")           # "1..0 # SKIP why", exit 0
    at_end(fn, *args)             # clean-up run at exit, before the status

At exit the status is 1 if any check failed or the number of checks run
differs from the plan, 0 otherwise.  An uncaught exception is reported as
a diagnostic and also makes the status nonzero.
"""
import atexit
import os
import sys
import traceback

_cleanups = []
_current = None


def at_end(fn, *args):
    """Run fn(*args) at exit (last registered first), even when checks
    failed; errors in it are reported, never fatal."""
    _cleanups.append((fn, args))


def _atexit():
    while _cleanups:
        fn, args = _cleanups.pop()
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - clean-up must not mask
            print(f"# clean-up {getattr(fn, '__name__', fn)} failed: {e}")
    if _current is not None:
        _current._end()


atexit.register(_atexit)


class Tap:
    def __init__(self, plan):
        self.plan = plan
        self.n = 0
        self.failed = 0
        print(f"1..{plan}", flush=True)
        global _current
        _current = self
        self._prev_hook = sys.excepthook
        sys.excepthook = self._excepthook

    @staticmethod
    def skip_all(reason):
        print(f"1..0 # SKIP {reason}", flush=True)
        sys.exit(0)

    def _line(self, ok, desc, directive=""):
        self.n += 1
        desc = " ".join(str(desc).split()).replace("#", r"\#")
        print(f"{'ok' if ok else 'not ok'} {self.n} - {desc}{directive}",
              flush=True)

    def ok(self, cond, desc, diag=None):
        cond = bool(cond)
        self._line(cond, desc)
        if not cond:
            self.failed += 1
            if diag is not None:
                self.diag(diag)
        return cond

    def eq(self, got, want, desc, diag=None):
        extra = f"\n{diag}" if diag else ""
        return self.ok(got == want, desc,
                       f"got:  {got!r}\nwant: {want!r}{extra}")

    def skip(self, desc, reason):
        self._line(True, desc, f" # SKIP {reason}")

    def skip_n(self, n, desc, reason):
        for _ in range(n):
            self.skip(desc, reason)

    def todo(self, cond, desc, reason, diag=None):
        """A check that documents a known shortfall: reported, not fatal."""
        cond = bool(cond)
        self._line(cond, desc, f" # TODO {reason}")
        if not cond and diag is not None:
            self.diag(diag)
        return cond

    def diag(self, text):
        text = text if isinstance(text, str) else repr(text)
        for line in text.splitlines() or [""]:
            print(f"# {line}")
        sys.stdout.flush()

    def _excepthook(self, typ, value, tb):
        self.failed += 1
        self.diag("uncaught exception:\n" +
                  "".join(traceback.format_exception(typ, value, tb)))

    def _end(self):
        sys.stdout.flush()
        if self.n != self.plan:
            self.diag(f"planned {self.plan} checks, ran {self.n}")
            os._exit(1)
        if self.failed:
            self.diag(f"failed {self.failed} of {self.n} checks")
            os._exit(1)


if __name__ == "__main__":
    # A helper, not a test: say so when prove runs tests/py/*.py.
    print("1..0 # SKIP helper module, not a test")
