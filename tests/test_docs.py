"""The documentation stays true: its links resolve, its commands parse, its config keys exist, and the
README's results table repeats docs/RESULTS.md."""
import argparse
import dataclasses
import importlib
import re
import shlex
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from wsis import config as config_lib

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "build", "data", "runs", "experiments", "node_modules", ".pytest_cache", ".benchmarks"}
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def markdown_files() -> List[Path]:
    return sorted(p for p in ROOT.rglob("*.md")
                  if not any(part in SKIP_DIRS or part.startswith(".ci") or part.endswith(".egg-info")
                             for part in p.relative_to(ROOT).parts[:-1]))  # fmt: skip


def _strip_code(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", _strip_code_blocks(text))


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (not - or _), spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    seen: Dict[str, int] = {}
    out = set()
    for line in _strip_code_blocks(path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = github_anchor(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> Iterator[str]:
    for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _strip_code(path.read_text())):
        yield m.group(1)


def test_markdown_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/RESULTS.md", "docs/USAGE.md", "benchmarks/RESULTS.md"} <= names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(path):
    broken = []
    for target in links(path):
        if re.match(r"^[a-z]+:", target):  # https:, mailto: ...: not ours to check offline
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_anchor_rule_matches_githubs():
    assert github_anchor("The model's options") == "the-models-options"
    assert github_anchor("1. The network and a training step") == "1-the-network-and-a-training-step"
    assert github_anchor("Table 3: the full model against Detector only") == "table-3-the-full-model-against-detector-only"
    assert github_anchor("`wsis.ops`: the kernels") == "wsisops-the-kernels"


# ---- commands -------------------------------------------------------------------------------------

def commands(path: Path) -> Iterator[Tuple[str, List[str]]]:
    """(module, argv) of every `python -m wsis.X ...` (or `torchrun ... -m wsis.X ...`) in the file's
    code blocks and inline code."""
    text = path.read_text()
    snippets = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        snippets += block.replace("\\\n", " ").splitlines()
    # inline code: a module named with its arguments (`python -m wsis.evaluate` alone names it)
    snippets += [s for s in re.findall(r"`([^`\n]*-m wsis\.[^`\n]*)`", _strip_code_blocks(text))
                 if re.search(r"-m wsis\.[\w.]+\s+\S", s)]
    for line in snippets:
        line = re.sub(r"\s+#.*$", "", line)
        m = re.search(r"-m (wsis(?:\.\w+)+)(.*)$", line)
        if m:
            yield m.group(1), shlex.split(m.group(2))


def _strip_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


class _Parsed(Exception):
    pass


def _parse_only(monkeypatch, module: str, argv: List[str]) -> None:
    """Runs the module's main up to its argument parsing, which must accept argv."""
    for name in ("parse_args", "parse_intermixed_args"):
        original = getattr(argparse.ArgumentParser, name)

        def parse_and_stop(self, args=None, namespace=None, _parse=original):
            _parse(self, args, namespace)
            raise _Parsed

        monkeypatch.setattr(argparse.ArgumentParser, name, parse_and_stop)
    main = importlib.import_module(module).main
    try:
        main(argv)
    except _Parsed:
        return
    except SystemExit as e:  # argparse's error (2), or --help (0)
        assert e.code == 0, f"python -m {module} {shlex.join(argv)}: its parser refuses these arguments"
        return
    raise AssertionError(f"python -m {module} {shlex.join(argv)}: main returned without parsing its arguments")


def _config_key_exists(key: str) -> bool:
    node = config_lib.Config
    for part in key.split("."):
        if part == "*" and dataclasses.is_dataclass(node):
            return True
        fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
        if part not in fields:
            return False
        node = fields[part].default_factory() if fields[part].default_factory is not dataclasses.MISSING else None
        node = type(node) if dataclasses.is_dataclass(node) else node
    return True


DOC_COMMANDS = [(p, m, a) for p in USER_DOCS for m, a in commands(p)]


def test_the_docs_hold_commands():
    modules = {m for _, m, _ in DOC_COMMANDS}
    assert {"wsis.train", "wsis.evaluate", "wsis.predict", "wsis.experiments", "wsis.data.sbd"} <= modules


@pytest.mark.parametrize("path,module,argv", DOC_COMMANDS,
                         ids=[f"{p.name}:{m} {' '.join(a)}"[:90] for p, m, a in DOC_COMMANDS])  # fmt: skip
def test_every_documented_command_parses(monkeypatch, path, module, argv):
    pytest.importorskip("timm", reason="the model's modules import timm (the lean CPU-only torch has none)")
    _parse_only(monkeypatch, module, argv)
    unknown = [a for a in argv if re.match(r"^[a-z_]+(\.[a-z_0-9]+)*=", a) and not _config_key_exists(a.split("=")[0])]
    assert not unknown, f"{path.name}: python -m {module}: unknown config keys {unknown}"


def test_a_refused_flag_fails_the_command_check(monkeypatch):
    pytest.importorskip("timm", reason="the model's modules import timm (the lean CPU-only torch has none)")
    with pytest.raises(AssertionError, match="refuses"):
        _parse_only(monkeypatch, "wsis.evaluate", ["--checkpoint", "x.pt", "--no-such-flag"])


# ---- config keys ------------------------------------------------------------------------------------

SECTIONS = tuple(f.name for f in dataclasses.fields(config_lib.Config) if dataclasses.is_dataclass(f.default_factory()
                 if f.default_factory is not dataclasses.MISSING else None))  # fmt: skip


def config_keys(path: Path) -> Iterator[str]:
    for span in re.findall(r"`([^`\n]+)`", _strip_code_blocks(path.read_text())):
        for token in span.split():
            m = re.match(rf"^((?:{'|'.join(SECTIONS)})\.[a-z_0-9.*]+?)(=.*)?$", token)
            if m and not re.search(r"\.(yaml|yml|json|txt|md|py)$", m.group(1)):  # a file such as data.yaml
                yield m.group(1)


def test_config_sections_are_found():
    assert {"model", "data", "solver", "test"} <= set(SECTIONS)


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_documented_config_key_exists(path):
    keys = set(config_keys(path))
    missing = sorted(k for k in keys if not _config_key_exists(k))
    assert not missing, f"{path.relative_to(ROOT)}: not keys of wsis/config.py: {missing}"


def test_the_key_check_can_fail():
    assert _config_key_exists("model.context_frame") and _config_key_exists("data.synthetic.touch_prob")
    assert _config_key_exists("data.synthetic.*")
    assert not _config_key_exists("model.no_such_key") and not _config_key_exists("model.context_frame.x")


# ---- the README's figures ---------------------------------------------------------------------------

def table_after(text: str, marker: str) -> List[List[str]]:
    """The body rows (cells) of the first Markdown table after the line holding `marker`."""
    lines = text[text.index(marker):].splitlines()[1:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[2:]  # the header and its rule


def test_the_readme_results_table_repeats_docs_results():
    readme = table_after((ROOT / "README.md").read_text(), "<!-- results-table")
    results = table_after((ROOT / "docs" / "RESULTS.md").read_text(), "<!-- headline")
    assert readme, "README.md: no results table after its <!-- results-table --> marker"
    missing = [row[0] for row in readme if row not in results]
    assert not missing, f"README rows not in docs/RESULTS.md's headline table (or with other figures): {missing}"
    for row in readme:  # every figure cell holds a number
        assert all(re.search(r"\d", cell) for cell in row[2:]), row


# ---- figures quoted once, defaults quoted as they are ----------------------------------------------------

# The one place that times the default command: every other doc links there.
TIMING_SOURCE = ROOT / "benchmarks" / "RESULTS.md"


def clock_times(text: str) -> List[str]:
    """The m:ss and h:mm:ss durations a prose text quotes (code left out)."""
    return re.findall(r"(?<![\d:.])\d{1,2}:[0-5]\d(?::[0-5]\d)?(?![\d:])", _strip_code(text))


def test_the_clock_time_rule_finds_durations():
    assert clock_times("took 7:31 to 14:21, `12:00` in code, ratio 1:2, 2026-12-03") == ["7:31", "14:21"]


@pytest.mark.parametrize("path", [p for p in USER_DOCS if p.name != "CHANGELOG.md"], ids=lambda p: p.name)
def test_the_default_commands_time_is_quoted_only_where_it_is_measured(path):
    assert clock_times(path.read_text()) == [], f"{path.name} quotes a run's time: link {TIMING_SOURCE.name} instead"


def _default(key: str):
    node = config_lib.Config()
    for part in key.split("."):
        node = getattr(node, part)
    return node


def quoted_defaults(text: str) -> List[Tuple[str, str]]:
    """(key, value) of each `key` (default V...) and `key=V` (the default) that a doc writes."""
    out = [(k, v) for k, v in re.findall(r"`([a-z_]+\.[a-z_.0-9]+)` \(default `?([^`;,)\s]+)`?", text)]
    out += re.findall(r"`([a-z_]+\.[a-z_.0-9]+)=([^`]+)` \(the default\)", text)
    return out


def test_the_quoted_default_rule_finds_both_forms():
    assert quoted_defaults("`a.b` (default 0.4; x) and `c.d=e` (the default)") == [("a.b", "0.4"), ("c.d", "e")]


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_every_quoted_default_is_the_configs(path):
    import yaml

    for key, value in quoted_defaults(path.read_text()):
        assert _config_key_exists(key), f"{path.name}: {key} is no config key"
        assert str(_default(key)) == str(yaml.safe_load(value)), f"{path.name}: {key}'s default is {_default(key)}, not {value}"


def test_the_readmes_description_of_the_cpu_default_is_the_configs():
    text = (ROOT / "README.md").read_text()
    cfg = config_lib.Config()
    synthetic = cfg.data.synthetic
    assert f"{synthetic.num_train} training and {synthetic.num_val} val images" in text
    assert f"for {cfg.solver.max_iter:,} iterations on the CPU" in text
