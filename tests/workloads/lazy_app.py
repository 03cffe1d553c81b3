# Lazy imports (PEP 810, Python 3.15): the modules named in __lazy_modules__
# are imported where first used, and those never used are never loaded.
# Before 3.15 the list is an ordinary global and every import is eager.
__lazy_modules__ = ["json", "decimal", "fractions", "statistics",
                    "email.message", "textwrap", "argparse", "csv",
                    "http.client"]
import sys
import json
import decimal
import fractions
import textwrap
import argparse
import csv
import http.client
from statistics import median
import email.message

before = sorted(m for m in ("json", "decimal", "argparse", "csv",
                            "http.client") if m in sys.modules)
m = email.message.EmailMessage()
m["Subject"] = textwrap.shorten("lazy imports from an archive, when reified", 24)
total = decimal.Decimal("1.10") * 3 + fractions.Fraction(1, 3).numerator
after = sorted(m for m in ("json", "decimal", "argparse", "csv",
                           "http.client") if m in sys.modules)
print("lazy_app", json.dumps({"subject": m["Subject"], "total": str(total),
                              "median": median([3, 1, 2])}),
      "loaded before use:", before, "after:", after)
