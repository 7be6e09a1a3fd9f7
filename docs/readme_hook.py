"""MkDocs hook: the site's home page is README.md, so the two never drift apart; and the figures
the pages show from docs/img/ are the repository's own, not stale copies.

README's links point into docs/ (`docs/sweeps.md`), so that they work on GitHub; on the site the
same pages sit one folder up, so `docs/` is dropped from each link. An image README shows from
elsewhere in the repository is shown from its copy in docs/img/. Any other link is left as it is:
the strict build then reports it, like a broken link in any page.
"""

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.readme")  # a warning here fails the strict build
HOME = "index.md"
LINK = re.compile(r"\]\(([^)#\s]+)")  # the target of a Markdown link or image, up to any #anchor
# docs/img/NAME: the file it copies (the scripts that draw these figures write them there)
FIGURES = {
    "example-speedup.png": "analysis/example-speedup.png",
    "depth_search.png": "benchmarks/depth_search.png",
}


def on_pre_build(config):
    root = Path(config.config_file_path).parent
    for name, source in FIGURES.items():
        copy = Path(config.docs_dir) / "img" / name
        if not copy.is_file() or copy.read_bytes() != (root / source).read_bytes():
            log.warning(f"docs/img/{name} is not a copy of {source}: cp {source} docs/img/{name}")


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != HOME:
        return markdown
    root = Path(config.config_file_path).parent
    copies = {source: name for name, source in FIGURES.items()}

    def site_target(match):
        target = match.group(1)
        if target.startswith("docs/"):
            return "](" + target.removeprefix("docs/")
        if target in copies:
            return "](img/" + copies[target]
        return match.group(0)

    return LINK.sub(site_target, (root / "README.md").read_text(encoding="utf-8"))
