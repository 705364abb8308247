"""`pi_check.py sources`: a private apt sources file (deb822) with the host's Debian
bookworm 'main' entries, read from its one-line and deb822 source files. Standard library only."""

from __future__ import annotations

import re
from pathlib import Path

from pi_errors import CheckError

DEBIAN_SUITES = ("bookworm", "bookworm-updates", "bookworm-security")


def debian_sources(source_list: Path, source_parts: Path) -> str:
    """The host's Debian bookworm 'main' entries (one-line or deb822), as deb822 stanzas."""
    entries = []
    files = [source_list] if source_list.is_file() else []
    files += sorted(source_parts.glob("*.list")) + sorted(source_parts.glob("*.sources"))
    for path in files:
        parse = _parse_deb822 if path.suffix == ".sources" else _parse_one_line
        entries += [e for e in map(_bookworm_main, parse(path.read_text())) if e]
    if not entries:
        raise CheckError(
            f"no Debian bookworm 'main' entry in {source_list} or {source_parts}/; "
            "set LUNGCNN_PI_APT_SOURCES to a deb822 sources file for a Debian mirror"
        )
    return "\n".join(_to_deb822(entry) for entry in entries)


def _parse_one_line(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        options = {}
        match = re.match(r"^(deb|deb-src)\s+\[([^\]]*)\]\s+(.*)$", line)
        if match:
            kind, raw_options, rest = match.groups()
            options = dict(o.split("=", 1) for o in raw_options.split() if "=" in o)
        elif line.startswith(("deb ", "deb-src ")):
            kind, rest = line.split(None, 1)
        else:
            continue
        uri, suite, *components = rest.split()
        entries.append(
            {
                "types": [kind],
                "uris": [uri],
                "suites": [suite],
                "components": components,
                "signed_by": options.get("signed-by"),
            }
        )
    return entries


def _parse_deb822(text: str) -> list[dict]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
            continue
        entries.append(
            {
                "types": fields.get("types", "").split(),
                "uris": fields["uris"].split(),
                "suites": fields.get("suites", "").split(),
                "components": fields.get("components", "").split(),
                "signed_by": fields.get("signed-by"),
            }
        )
    return entries


def _bookworm_main(entry: dict) -> dict | None:
    """The entry restricted to Debian's bookworm suites, or None if it has none of them."""
    suites = [suite for suite in entry["suites"] if suite in DEBIAN_SUITES]
    if "deb" not in entry["types"] or not suites or "main" not in entry["components"]:
        return None
    return {**entry, "suites": suites}


def _to_deb822(entry: dict) -> str:
    lines = [
        "Types: deb",
        f"URIs: {' '.join(entry['uris'])}",
        f"Suites: {' '.join(entry['suites'])}",
        "Components: main",
    ]
    if entry["signed_by"]:
        lines.append(f"Signed-By: {entry['signed_by']}")
    return "\n".join(lines) + "\n"
