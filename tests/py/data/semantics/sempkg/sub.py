"""Sub doc: ünïcödé."""
import sys
BIG = 123456789012345678901234567890
NEG = -98765432109876543210
SMALL = 5
F = 1.5e300
C = 3+4j
B = b"bytes\x00\xff"
T = (1, "two", (3.0, None), ...)
U = "ünïcödé ✓ 𝄞"
def membership(x):
    return x in {'alpha', 'beta', 'gamma'}
def bmember(x):
    return x in {b'a', b'b'}
def tmember(x):
    return x in {(1, 'a'), (2, 'b')}
def closure(n):
    def inner(m):
        return n + m
    return inner
class K:
    """K doc."""
    def __init__(self, v=1):
        self.v = v
def eq(a, b):
    return True
K.__eq__ = eq
def gen():
    yield from range(3)
async def co():
    return f"{SMALL:>4}|{U!r}"
def raiser():
    x = 1
    raise ValueError("boom %d" % x)
def names():
    return membership.__code__.co_names, closure.__code__.co_varnames
