"""A griffe extension for gncpu's API pages (mkdocs.yml loads it).

1. Docstrings a stub hides.  Where a package has a stub (``__init__.pyi``),
   griffe documents the stub's objects, which have no docstrings; the source
   module imported the real object from a private module.  Such an object
   gets the docstring of the object its source imported (and so do its
   members), read statically: building the pages needs no torch.
2. gncpu's docstrings are plain text: ``name: text`` entries with indented
   continuation lines, ``::`` before an indented literal block, ``>>>``
   examples, Sphinx roles (``:func:`fuse```).  They are turned into Markdown
   (a list, code blocks, code spans) so the pages keep their shape.
"""

import re

import griffe

_ENTRY = re.compile(r"^([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*): (\S.*)$")
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data):`~?([^`]+)`")


def plain_to_markdown(text):
    out = []
    in_literal = in_entry = in_example = False
    for number, line in enumerate(_ROLE.sub(r"`\1`", text).splitlines()):
        stripped = line.strip()
        if stripped.startswith(">>>") or (in_example and stripped.startswith("...")):
            if not in_example and out and out[-1].strip():
                out.append("")  # an example is a code block
            out.append("    " + stripped)
            in_example, in_entry, in_literal = True, False, False
            continue
        in_example = False
        indented = line.startswith(" ")
        if in_literal:
            if not stripped or indented:
                out.append(line)
                continue
            in_literal = False
        if in_entry:
            if stripped and indented:
                out.append("  " + stripped)
                continue
            in_entry = False
        match = _ENTRY.match(line) if number else None  # not the summary line
        if match:
            if out and out[-1].strip() and not out[-1].startswith(("- ", "  ")):
                out.append("")
            out.append(f"- `{match[1]}`: {match[2]}")
            in_entry = True
            continue
        if out and out[-1].startswith(("- ", "  ")) and stripped:
            out.append("")  # a paragraph after a list
        if stripped.endswith("::"):
            line = line.rstrip()[:-1]
            in_literal = True
        out.append(line)
    return "\n".join(out)


def _objects(obj):
    yield obj
    for member in list(obj.members.values()):
        if not member.is_alias and member.parent is obj:
            yield from _objects(member)


def _fill_from(stub, source):
    if stub.docstring is None and source.docstring is not None:
        stub.docstring = griffe.Docstring(source.docstring.value, parent=stub)
    if stub.is_class and source.is_class:
        for name, member in stub.members.items():
            if not member.is_alias and name in source.members:
                try:
                    _fill_from(member, source.members[name])
                except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                    pass


class GncpuDocstrings(griffe.Extension):
    def on_package(self, *, pkg, loader, **kwargs):
        if pkg.name != "gncpu":
            return
        for module in [o for o in _objects(pkg) if o.is_module]:
            for name, member in module.members.items():
                if member.is_alias or member.docstring is not None or name not in module.imports:
                    continue
                try:
                    source = loader.modules_collection.get_member(module.imports[name])
                    _fill_from(member, source.final_target if source.is_alias else source)
                except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                    pass
        for obj in _objects(pkg):
            targets = [obj] + [m.final_target for m in obj.members.values() if m.is_alias
                               and m.resolved]
            for target in targets:
                if target.docstring is not None and not target.extra.get("gncpu_md"):
                    target.docstring.value = plain_to_markdown(target.docstring.value)
                    target.extra["gncpu_md"] = True
