#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Man pages from Documentation/, with docutils' manpage writer.

    mkman.py --version V OUT.N DOC.rst
    mkman.py --list

The page's name, section and one-line description come from the table
below; the :doc: role of the documentation (a Sphinx role docutils lacks)
becomes a reference to the man page, or to the guide under
/usr/share/doc/pycds/, it names.
"""
import argparse
import os
import sys

from docutils import nodes
from docutils.core import publish_doctree, publish_from_doctree
from docutils.parsers.rst import roles
from docutils.writers import manpage

# page name -> (section, source under Documentation/, description)
PAGES = {
    "pycds": ("1", "pycds.rst",
              "build, inspect and verify archives of ready-made Python "
              "code objects"),
    "pycds-loader": ("8", "pycds-loader.rst",
                     "publish pycds archives on a huge-page tmpfs shared "
                     "by every process"),
    "pycds-top": ("8", "pycds-top.rst",
                  "show pycds imports and page faults per Python process, "
                  "and export them to Prometheus"),
    "pycds-archive": ("5", "archive-format.rst",
                      "format of pycds archives"),
}
BY_SOURCE = {src[:-4]: f"{name}({sec})"
             for name, (sec, src, _) in PAGES.items()}


def doc_role(name, rawtext, text, lineno, inliner, options={}, content=[]):
    target = BY_SOURCE.get(text)
    if target is None:
        target = f"{text} (/usr/share/doc/pycds/{text}.rst)"
    return [nodes.strong(rawtext, target)], []


def translator(meta):
    class Translator(manpage.Translator):
        def __init__(self, document):
            super().__init__(document)
            self._docinfo.update(meta)

        def visit_title(self, node):
            # The page's name is the table's, not the document's title.
            if isinstance(node.parent, nodes.document):
                raise nodes.SkipNode
            super().visit_title(node)
    return Translator


def render(name, version, source):
    sec, _, desc = PAGES[name]
    with open(source, encoding="utf-8") as f:
        text = f.read()
    settings = {"report_level": 2, "halt_level": 2, "exit_status_level": 2,
                "input_encoding": "utf-8", "output_encoding": "utf-8"}
    tree = publish_doctree(text, source_path=source,
                           settings_overrides=settings)
    writer = manpage.Writer()
    writer.translator_class = translator({
        "title": name, "title_upper": name.upper(), "subtitle": desc,
        "manual_section": sec, "manual_group": "pycds",
        "version": version,
        # Reproducible: the date of the source, as SOURCE_DATE_EPOCH
        # says when set.
        "date": __import__("time").strftime("%Y-%m-%d", __import__(
            "time").gmtime(int(os.environ.get("SOURCE_DATE_EPOCH",
                                              os.stat(source).st_mtime)))),
    })
    return publish_from_doctree(tree, writer=writer,
                                settings_overrides=settings)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default="")
    ap.add_argument("--list", action="store_true",
                    help="print each page as NAME.SECTION SOURCE")
    ap.add_argument("out", nargs="?")
    ap.add_argument("source", nargs="?")
    a = ap.parse_args()
    if a.list:
        for name, (sec, src, _) in PAGES.items():
            print(f"{name}.{sec} {src}")
        return 0
    if not a.out or not a.source:
        ap.error("give OUT.N and DOC.rst")
    name, _, sec = os.path.basename(a.out).rpartition(".")
    if name not in PAGES or PAGES[name][0] != sec:
        ap.error(f"{a.out}: not one of the pages (--list)")
    roles.register_local_role("doc", doc_role)
    try:
        page = render(name, a.version, a.source)
    except Exception as e:
        print(f"mkman: {a.source}: {e}", file=sys.stderr)
        return 1
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(page)
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
