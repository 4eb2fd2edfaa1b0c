"""The reader's path through the site: every page of Parts 1 to 4 (and the explorer) ends with where to go next,
linking pages that exist; the example notebooks sit in the nav beside the part they illustrate; every page links
the notation page (overrides/main.html puts the link above each page's title)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _nav() -> list:
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!ENV", lambda loader, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)["nav"]


def _pages(section) -> list[str]:
    if isinstance(section, str):
        return [section]
    if isinstance(section, dict):
        return [p for value in section.values() for p in _pages(value)]
    return [p for item in section for p in _pages(item)]


def _parts() -> dict[str, list[str]]:
    return {name: _pages(value) for item in _nav() for name, value in item.items() if name.startswith("Part ")}


def test_every_page_of_the_parts_says_where_next_with_working_links():
    pages = [p for part in _parts().values() for p in part if p.endswith(".md")] + ["explorer.md"]
    assert len(pages) >= 17
    for page in pages:
        text = (DOCS / page).read_text(encoding="utf-8")
        match = re.search(r"^\*\*Where next\.\*\* (.+?)(?:\n\n|\Z)", text, flags=re.M | re.S)
        assert match, f"{page} does not end with where to go next"
        links = re.findall(r"\]\(([^)#]+)", match.group(1))
        assert links, page
        for link in links:
            assert (DOCS / page).parent.joinpath(link).resolve().is_file(), (page, link)


def test_each_example_notebook_sits_in_a_part():
    in_parts = {p for part in _parts().values() for p in part}
    # hello.py is the build's smoke-test notebook (tests/test_site_build.py), built but not in the nav
    notebooks = {f"examples/{p.name}" for p in (DOCS / "examples").glob("*.py") if p.name != "hello.py"}
    assert notebooks <= in_parts, notebooks - in_parts


def test_every_page_links_the_notation_page():
    template = (ROOT / "overrides" / "main.html").read_text(encoding="utf-8")
    assert "{% block content %}" in template and "'notation/' | url" in template and "{{ super() }}" in template
    assert "notation.md" in _pages(_nav())
