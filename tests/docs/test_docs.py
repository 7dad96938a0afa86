"""The docs stay true: every relative link resolves (to a file, and to a heading when it names one),
every `edge-deploy` command the docs name exists, and every shell session says how it is exercised
(a CI test that runs what it shows, or a cluster this project's machines do not have); the last are
listed in the test's output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_deploy.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # pictures too
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
SHELL_LANGUAGES = {"console", "bash", "sh", "shell"}
MARKER = re.compile(r"<!-- shell: (ci|cluster)\b([^>]*)-->\s*\n```(\w*)\n")
# `edge-deploy WORD` where edge-deploy is the command (line start, after a prompt, a path or a pipe), not
# a Kubernetes namespace (`-n edge-deploy ...`) or an image name
COMMAND = re.compile(r"(?:^|[$|;&(]\s*|\.venv/bin/|^\s*)edge-deploy\s+(?:-v\s+)?([a-z][a-z-]*)", re.MULTILINE)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## The `edge-deploy` queue, explained\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#the-edge-deploy-queue-explained) [gone](gone.md) [bad](other.md#nowhere) "
        "[web](https://example.com/x) ![img](pic.png)\n```\n[in code](nothing.md)\n```\n"
    )
    assert broken_links(page) == [
        "gone.md: no such file",
        "other.md#nowhere: no heading #nowhere in other.md",
        "pic.png: no such file",
    ]


def commands_named(text: str) -> set[str]:
    code = [body for _, body in FENCE.findall(text)] + INLINE_CODE.findall(text)
    return {name for snippet in code for name in COMMAND.findall(snippet)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_edge_deploy_command_the_docs_name_exists(page):
    unknown = sorted(commands_named(page.read_text()) - set(COMMANDS))
    assert not unknown, f"{page.relative_to(ROOT)} names edge-deploy commands that do not exist: {unknown}"


def test_the_command_check_catches_a_made_up_command():
    assert commands_named("run `edge-deploy frobnicate --now`, then `kubectl -n edge-deploy get pods`") == {
        "frobnicate"
    }
    assert commands_named("```console\n$ .venv/bin/edge-deploy -v demo\n```\n") == {"demo"}


def test_every_shell_session_says_how_it_is_exercised(capsys):
    listed, unmarked = [], []
    for page in PAGES:
        text = page.read_text()
        marked = {match.end(): (match.group(1), match.group(2).strip()) for match in MARKER.finditer(text)}
        for fence in FENCE.finditer(text):
            if fence.group(1) not in SHELL_LANGUAGES:
                continue
            where = f"{page.relative_to(ROOT)}:{text[: fence.start()].count(chr(10)) + 1}"
            mark = marked.get(fence.start() + len(fence.group(1)) + 4)
            if mark is None:
                unmarked.append(where)
                continue
            kind, how = mark
            if kind == "ci":  # names what runs it in CI: that file must exist
                runner = how.split()[0]
                assert (ROOT / runner).exists(), f"{where}: the marker names {runner}, which does not exist"
            listed.append(f"{kind:8} {where}  {how}")
    with capsys.disabled():
        print("\nshell sessions in the docs:\n  " + "\n  ".join(listed))
    assert listed and not unmarked, f"shell sessions without a <!-- shell: ci|cluster ... --> marker: {unmarked}"
