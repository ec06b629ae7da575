"""The docs stay honest: every option, hook, capability, CLI command and public name is
documented, every public name has a docstring and a ``::: name`` directive in the API
reference (docs/reference/), the examples run, and mkdocs builds the site with --strict.

Markers in the Markdown, an HTML comment on the line before a ```python fence:

- ``<!-- norun: why -->``: not executed (only for kafka:// and aiokafka:// examples);
- ``<!-- pytest ARGS -->``: a test file, run by pytest with ARGS in a scratch directory;
- ``<!-- file: NAME -->``: a module shown whole; the tests below import and exercise it.

Every other ```python block is executed, in order, one process per page (so each page
starts with a fresh memory broker and ``$BUS_URL`` unset).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

import bus
import bus.hookspecs
import bus.spi
from bus._cli import build_parser
from bus._options import BUS, CORE_OPTIONS, PRODUCER, Option
from bus._plugins import Registry, reset_registry

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = {p.relative_to(DOCS).as_posix(): p.read_text() for p in sorted(DOCS.rglob("*.md"))}
ALL_DOCS = "\n".join(PAGES.values())
# A missing page fails the tests that read it, not the collection of this file.
CONCEPTS = PAGES.get("concepts.md", "")
CLI = PAGES.get("cli.md", "")
WRITING = PAGES.get("backends/writing.md", "")


# -- reading Markdown -----------------------------------------------------------------------


@attrs.frozen
class Block:
    page: str
    line: int  # of the first code line
    lang: str
    code: str
    marker: str | None  # the HTML comment before the fence, without <!-- -->


_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
_MARKER = re.compile(r"<!--\s*(.*?)\s*-->\s*\n\s*\Z")


def blocks(page: str, lang: str = "python") -> list[Block]:
    text = PAGES[page]
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) != lang:
            continue
        before = _MARKER.search(text[: match.start()])
        found.append(
            Block(
                page,
                text.count("\n", 0, match.start(2)) + 1,
                lang,
                match.group(2),
                before.group(1) if before else None,
            )
        )
    return found


def sections(text: str) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading of any level."""
    parts = re.split(r"^#{1,6} +(.*)$", text, flags=re.M)
    return {h.strip(): body for h, body in zip(parts[1::2], parts[2::2], strict=True)}


def section(text: str, heading: str) -> str:
    found = sections(text)
    assert heading in found, f"no heading {heading!r}; headings: {list(found)}"
    return found[heading]


def table_rows(text: str) -> dict[str, list[str]]:
    """First cell -> the row's cells, for every Markdown table row in ``text``."""
    rows = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not (line.startswith("|") and line.endswith("|")) or set(line) <= set("|-: "):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line[1:-1])]
        rows[cells[0]] = cells
    return rows


# -- (1) options ----------------------------------------------------------------------------


def _option_section(option: Option) -> str:
    if BUS in option.scopes:
        return "Connection options"
    return "Producer options" if PRODUCER in option.scopes else "Consumer options"


def _check_option_row(option: Option, text: str, where: str) -> None:
    row = table_rows(text).get(f"`{option.name}`")
    expected = f"| `{option.name}` | `{option.default!r}` | {option.doc} |"
    assert row is not None, f"option {option.name!r} is missing from {where}; add:\n{expected}"
    assert row[1] == f"`{option.default!r}`", (
        f"{where}: option {option.name!r} has default {option.default!r}, docs say {row[1]}"
    )
    assert option.doc in row[2], (
        f"{where}: the meaning of {option.name!r} must include its doc string:\n{expected}"
    )


@pytest.mark.parametrize("option", CORE_OPTIONS, ids=lambda o: o.name)
def test_core_option_is_in_its_concepts_table(option: Option) -> None:
    heading = _option_section(option)
    _check_option_row(option, section(CONCEPTS, heading), f"concepts.md, {heading}")


#: The page documenting each built-in backend.
BACKEND_PAGES = {
    "memory": "backends/memory.md",
    "kafka": "backends/kafka.md",
    "aiokafka": "backends/kafka.md",
    "sqlite": "backends/sqlite.md",
}


def _builtin_backends() -> list[bus.spi.BackendDescriptor]:
    """The descriptors polybus's own ``bus`` entry points register, and the sqlite://
    plugin's this repository ships (no client library is imported: a backend imports it
    in its factory)."""
    registry = Registry.load()
    ours = {"polybus", "polybus-sqlite"}
    found = [i.descriptor for i in registry.backends.values() if i.distribution in ours]
    return sorted(found, key=lambda d: d.name)


BUILTIN = _builtin_backends()
BACKEND_OPTIONS = [(d, o) for d in BUILTIN for o in d.options]


def test_the_builtin_backends_are_found() -> None:
    assert {"memory", "kafka"} <= {d.name for d in BUILTIN}


@pytest.mark.parametrize("descriptor", BUILTIN, ids=lambda d: d.name)
def test_builtin_backend_has_a_page(descriptor: bus.spi.BackendDescriptor) -> None:
    page = BACKEND_PAGES.get(descriptor.name)
    assert page in PAGES, f"backend {descriptor.name!r} has no page; add it to BACKEND_PAGES"
    for scheme in descriptor.schemes:
        assert f"`{scheme}://` options" in sections(PAGES[page]) or not descriptor.options


@pytest.mark.parametrize(
    ("descriptor", "option"), BACKEND_OPTIONS, ids=lambda x: getattr(x, "name", "")
)
def test_backend_option_is_in_its_backend_page(
    descriptor: bus.spi.BackendDescriptor, option: Option
) -> None:
    page = BACKEND_PAGES[descriptor.name]
    heading = f"`{descriptor.schemes[0]}://` options"
    _check_option_row(option, section(PAGES[page], heading), f"{page}, {heading}")


@pytest.mark.parametrize("descriptor", BUILTIN, ids=lambda d: d.name)
def test_backend_options_tables_hold_no_stale_option(
    descriptor: bus.spi.BackendDescriptor,
) -> None:
    page = BACKEND_PAGES[descriptor.name]
    heading = f"`{descriptor.schemes[0]}://` options"
    if heading not in sections(PAGES[page]):
        return
    documented = {c.strip("`") for c in table_rows(section(PAGES[page], heading))} - {"name"}
    mine = {o.name for o in descriptor.options}
    assert documented <= mine, f"{page} documents options {descriptor.name} lacks"


def test_core_options_tables_hold_no_stale_option() -> None:
    known = {o.name for o in CORE_OPTIONS}
    for heading in ("Connection options", "Producer options", "Consumer options"):
        documented = {c.strip("`") for c in table_rows(section(CONCEPTS, heading))} - {"name"}
        assert documented <= known, f"concepts.md, {heading}: not options: {documented - known}"


# -- (2) hooks, SPI -------------------------------------------------------------------------


HOOKSPECS = [
    name
    for name, f in inspect.getmembers(bus.hookspecs, inspect.isfunction)
    if name.startswith("bus_")
]


def test_there_are_hookspecs() -> None:
    assert "bus_register_backends" in HOOKSPECS


@pytest.mark.parametrize("hook", HOOKSPECS)
def test_hookspec_is_documented(hook: str) -> None:
    assert f"`{hook}" in WRITING, f"hook {hook} is missing from docs/backends/writing.md"
    params = inspect.signature(getattr(bus.hookspecs, hook)).parameters
    for name in params:
        assert name in WRITING, f"argument {name!r} of hook {hook} is not documented"


@pytest.mark.parametrize(
    "cls", [bus.spi.BackendDescriptor, bus.spi.BackendConfig], ids=lambda c: c.__name__
)
def test_spi_value_fields_are_documented(cls: Any) -> None:
    rows = table_rows(WRITING)
    for field in attrs.fields(cls):
        assert f"`{field.name}`" in rows, f"{cls.__name__}.{field.name} is missing"


@pytest.mark.parametrize(
    "cls",
    [
        bus.spi.Backend,
        bus.spi.ProducerDriver,
        bus.spi.ConsumerDriver,
        bus.spi.AsyncProducerDriver,
        bus.spi.AsyncConsumerDriver,
        bus.spi.UnclaimedFailures,
    ],
    ids=lambda c: c.__name__,
)
def test_spi_classes_and_methods_are_documented(cls: type) -> None:
    assert f"`{cls.__name__}`" in WRITING
    for name, _ in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_"):
            assert f"`{name}" in WRITING, f"{cls.__name__}.{name} is missing from writing.md"


# -- (3) capabilities -----------------------------------------------------------------------


@pytest.mark.parametrize("word", list(bus.spi.CAPABILITIES))
def test_capability_is_in_the_capabilities_table(word: str) -> None:
    table = table_rows(section(WRITING, "Capabilities"))
    assert f"`{word}`" in table, f"capability {word!r} is missing from writing.md"


@pytest.mark.parametrize("descriptor", BUILTIN, ids=lambda d: d.name)
def test_backend_page_lists_exactly_its_capabilities(
    descriptor: bus.spi.BackendDescriptor,
) -> None:
    page = BACKEND_PAGES[descriptor.name]
    text = section(PAGES[page], f"`{descriptor.schemes[0]}://` capabilities")
    for word in bus.spi.CAPABILITIES:
        has = re.search(rf"`{word}`", text) is not None
        assert has == (word in descriptor.capabilities), f"{page} is wrong about {word!r}"


# -- (4) the CLI ----------------------------------------------------------------------------


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(build_parser()))


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"
    ]


def test_the_cli_has_the_commands_of_docs_cli_md() -> None:
    """The commands docs/cli.md has a section for."""
    top = {path[0] for path in COMMANDS}
    assert {"backends", "produce", "consume", "topics", "demo", "bench"} <= top


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_cli_command_and_its_options_are_documented(path: tuple[str, ...]) -> None:
    heading = f"`bus {' '.join(path)}`"
    text = section(CLI, heading)
    for option in _long_options(COMMANDS[path]):
        assert option in text, f"cli.md, {heading}: option {option} is not documented"


def test_global_cli_options_are_documented() -> None:
    for option in _long_options(build_parser()):
        assert option in CLI


def test_consume_output_format_is_documented() -> None:
    assert "Partition:%d, Offset:%d, key:%s, value:%s" in CLI


# -- (5) public names -----------------------------------------------------------------------


@pytest.mark.parametrize("name", bus.__all__)
def test_public_name_is_documented(name: str) -> None:
    assert re.search(rf"\b{re.escape(name)}\b", ALL_DOCS), f"bus.{name} is not in the docs"


def _drawn_tree(text: str) -> dict[str, str]:
    """Child -> parent, from the first text block of box-drawing lines in ``text``."""
    tree = re.search(r"```text\n(.*?)```", text, re.S)
    assert tree, "the Errors section draws the hierarchy in a ```text block"
    parents: dict[str, str] = {}
    stack: list[str] = []
    for line in tree.group(1).splitlines():
        match = re.match(r"([ │├└─]*)(\w+)", line)
        assert match, f"not a tree line: {line!r}"
        depth = len(match.group(1)) // 4
        del stack[depth:]
        if stack:
            parents[match.group(2)] = stack[-1]
        stack.append(match.group(2))
    return parents


def test_error_hierarchy_is_drawn_as_the_code_has_it() -> None:
    drawn = _drawn_tree(section(CONCEPTS, "Errors"))
    for name in bus.__all__:
        error = getattr(bus, name)
        if not (isinstance(error, type) and issubclass(error, bus.BusError)):
            continue
        if error is bus.BusError:
            continue
        parent = next(b for b in error.__mro__[1:] if issubclass(b, bus.BusError))
        assert drawn.get(name) == parent.__name__, (
            f"concepts.md draws {name} under {drawn.get(name)}, the code under {parent.__name__}"
        )


# -- (6) the examples run -------------------------------------------------------------------


_RUNNER = """
import json, sys, traceback
sys.path.insert(0, ".")
namespace = {"__name__": "__docs__"}
for page, line, code in json.load(sys.stdin):
    try:
        exec(compile("\\n" * (line - 1) + code, "docs/" + page, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"docs/{page}: the example at line {line} failed")
"""


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BUS_URL", "BUS_TEST_URL")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _runnable(page: str) -> list[Block]:
    return [b for b in blocks(page) if b.marker is None]


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)])
def test_examples_run_on_memory(page: str, tmp_path: Path) -> None:
    payload = json.dumps([[b.page, b.line, b.code] for b in _runnable(page)])
    done = _run([sys.executable, "-c", _RUNNER], tmp_path, _clean_env(), payload)
    assert done.returncode == 0, done.stderr


def test_examples_are_run() -> None:
    assert len(_runnable("quickstart.md")) >= 10
    assert _runnable("concepts.md")


@pytest.mark.parametrize("block", [b for p in PAGES for b in blocks(p)], ids=repr)
def test_only_kafka_examples_are_not_run(block: Block) -> None:
    marker = block.marker or ""
    assert not marker or re.match(r"(norun:|pytest\b|file: )", marker), (
        f"{block.page}:{block.line}: unknown marker <!-- {marker} -->"
    )
    if marker.startswith("norun"):
        assert re.search(r"\b(aio)?kafka://", block.code), (
            f"{block.page}:{block.line}: only kafka:// examples may be marked norun"
        )


def _pytest_blocks() -> list[Block]:
    return [b for p in PAGES for b in blocks(p) if (b.marker or "").startswith("pytest")]


@pytest.mark.parametrize("block", _pytest_blocks(), ids=lambda b: f"{b.page}:{b.line}")
def test_test_file_examples_pass(block: Block, tmp_path: Path) -> None:
    name = re.match(r"# (test_\w+\.py)\n", block.code)
    assert name, f"{block.page}:{block.line}: a test file example starts with '# test_x.py'"
    (tmp_path / name.group(1)).write_text(block.code)
    args = block.marker.split()[1:] if block.marker else []
    pytest_args = ["-q", "-p", "no:cacheprovider", *args, name.group(1)]
    done = _run([sys.executable, "-m", "pytest", *pytest_args], tmp_path, _clean_env())
    assert done.returncode == 0, done.stdout + done.stderr


# -- the example plugin of writing.md -------------------------------------------------------


@pytest.fixture
def toybus(tmp_path: Path) -> Iterator[ModuleType]:
    """The example backend of writing.md, imported and registered (not installed)."""
    (block,) = [b for b in blocks("backends/writing.md") if b.marker == "file: toybus.py"]
    path = tmp_path / "toybus.py"
    path.write_text(block.code)
    spec = importlib.util.spec_from_file_location("toybus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reset_registry(Registry.load(plugins=[module]))
    try:
        yield module
    finally:
        reset_registry()


def test_the_example_backend_works(toybus: ModuleType) -> None:
    with bus.connect("toy://", max_value_bytes=10) as b:
        assert b.backend == "toy"
        with b.producer() as producer:
            first = producer.send("t", b"one", key=b"k", headers=[("h", b"1")])
            producer.enqueue("t", b"two")
            outcomes = []
            producer.enqueue("t", b"x" * 11, on_delivery=lambda d, e: outcomes.append(e))
            assert isinstance(outcomes[0], bus.MessageTooLarge)
            producer.enqueue("t", b"y" * 11)
            with pytest.raises(bus.MessageTooLarge):
                producer.flush()
        assert (first.partition, first.offset) == (0, 0)
        with b.consumer("t", offset_reset="earliest") as consumer:
            got = consumer.poll_batch(10, timeout=1)
            assert [m.value for m in got] == [b"one", b"two"]
            assert got[0].headers == (("h", b"1"),) and got[0].key == b"k"
            consumer.seek("t", 0, 1)
            again = consumer.poll(timeout=1)
            assert again is not None and again.value == b"two"
            assert consumer.poll(timeout=0.05) is None
            threading.Timer(0.1, consumer.close).start()
            assert list(consumer) == []  # close() from another thread ends the loop
        with pytest.raises(bus.UnsupportedError):
            b.consumer("t", group="g")
        with pytest.raises(bus.UnsupportedError):
            b.async_producer()


_REGISTER_TOYBUS = """
import toybus
from bus._plugins import Registry, reset_registry

reset_registry(Registry.load(plugins=[toybus]))
"""


def test_the_example_backend_passes_the_conformance_tests_it_selects(
    toybus: ModuleType, tmp_path: Path
) -> None:
    """As writing.md says: what its capabilities select passes, the rest is skipped."""
    (tmp_path / "conftest.py").write_text(_REGISTER_TOYBUS)
    (tmp_path / "test_conformance.py").write_text("from bus.testing.conformance import *\n")
    env = _clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    pytest_args = ["-q", "-p", "no:cacheprovider", "--bus-url", "toy://"]
    done = _run([sys.executable, "-m", "pytest", *pytest_args], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and " skipped" in done.stdout


def test_the_example_backend_refuses_a_bad_option(toybus: ModuleType) -> None:
    with pytest.raises(bus.ConfigError, match="max_value_bytes"):
        bus.connect("toy://?max_value_bytes=-1")


def test_the_example_backend_declares_what_the_text_says(toybus: ModuleType) -> None:
    (descriptor,) = toybus.bus_register_backends()
    assert isinstance(descriptor, bus.spi.BackendDescriptor)
    toml = "\n".join(b.code for b in blocks("backends/writing.md", "toml"))
    assert '[project.entry-points.bus]\ntoy = "toybus"' in toml


def test_the_example_codec_plugin_works() -> None:
    (block,) = [b for b in blocks("backends/writing.md") if "def bus_register_codecs" in b.code]
    plugin = ModuleType("codec_plugin")
    exec(compile(block.code, "docs/backends/writing.md", "exec"), plugin.__dict__)
    reset_registry(Registry.load(plugins=[plugin]))
    try:
        with bus.connect("memory://docs-codec") as b:
            with b.producer(serializer="json-lines") as producer:
                producer.send("rows", [{"a": 1}, {"b": 2}])
            with b.consumer("rows", offset_reset="earliest", deserializer="json-lines") as c:
                message = c.poll(timeout=1)
                assert message is not None and message.value == [{"a": 1}, {"b": 2}]
    finally:
        reset_registry()


# -- (7) the site builds --------------------------------------------------------------------


def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(
            module, reason=f"{module} is not installed: pip install 'polybus[docs]'"
        )
    site = str(tmp_path / "site")
    done = _run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", site], ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert f" {page}\n" in config, f"docs/{page} is not in the mkdocs.yml nav"


# -- (8) the API reference ------------------------------------------------------------------

#: The public modules of ``bus.testing``, each with an ``__all__``.
TESTING_MODULES = (
    "bus.testing.plugin",
    "bus.testing.recorder",
    "bus.testing.strategies",
    "bus.testing.helpers",
    "bus.testing.apis",
    "bus.testing.statemachine",
    "bus.testing.conformance",
)
#: Modules whose classes' public methods and properties need docstrings of their own
#: (the reference renders members only when they have one, or shows them bare).
MEMBERS_DOCUMENTED = ("bus", "bus.testing.recorder")
REFERENCE = {page: text for page, text in PAGES.items() if page.startswith("reference/")}
# `::: dotted.name`, then its indented YAML options block, if any.
_DIRECTIVE = re.compile(r"^::: *([\w.]+)[ \t]*\n((?:(?:[ \t]+\S.*)?\n)*)", re.M)


def _mkdocs_config() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        """Reads mkdocs.yml; ``!!python/...`` tags (which mkdocs allows) become None."""

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
    config: dict[str, Any] = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)
    return config


def _handler_options() -> dict[str, Any]:
    for plugin in _mkdocs_config().get("plugins", []):
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            options: dict[str, Any] = plugin["mkdocstrings"]["handlers"]["python"]["options"]
            return options
    raise AssertionError("mkdocs.yml has no mkdocstrings plugin")


_API: list[Any] = []


def _api() -> Any:
    """``bus`` as griffe reads it for the reference, with mkdocs.yml's extensions (the
    ``#:`` comments of constants are docstrings there)."""
    griffe = pytest.importorskip("griffe", reason="pip install 'polybus[docs]'")
    if not _API:
        extensions = []
        for given in _handler_options().get("extensions", []):
            is_path = isinstance(given, str) and ".py" in given  # relative to the repository
            extensions.append(str(ROOT / given) if is_path else given)
        loader = griffe.GriffeLoader(
            extensions=griffe.load_extensions(*extensions), search_paths=[str(ROOT)]
        )
        _API.append(loader.load("bus"))
        loader.resolve_aliases(implicit=False, external=False)
    return _API[0]


def _fixtures(api: Any) -> list[str]:
    plugin = api["testing.plugin"]
    return [
        name
        for name, member in plugin.members.items()
        if not name.startswith("_")
        and not member.is_alias  # imported names
        and member.is_function
        and any(str(d.value).startswith("pytest.fixture") for d in member.decorators)
    ]


def _public_names(api: Any) -> dict[str, str]:
    """Every public name, dotted as a user imports it -> the module holding it."""
    modules: dict[str, list[str]] = {
        "bus": list(bus.__all__),
        "bus.spi": list(bus.spi.__all__),
        "bus.hookspecs": HOOKSPECS,
    }
    for module in TESTING_MODULES:
        modules[module] = list(importlib.import_module(module).__all__)
    modules["bus.testing.plugin"] += _fixtures(api)
    return {f"{module}.{name}": module for module, names in modules.items() for name in names}


def _griffe_object(api: Any, dotted: str) -> Any:
    found = api[dotted.removeprefix("bus.")] if dotted != "bus" else api
    return found.final_target if found.is_alias else found


def _has_docstring(obj: Any) -> bool:
    return obj.docstring is not None and bool(obj.docstring.value.strip())


def test_the_public_names_are_found() -> None:
    names = _public_names(_api())
    assert {"bus.Producer", "bus.spi.Option", "bus.testing.plugin.bus_url"} <= set(names)
    assert "bus.hookspecs.bus_register_backends" in names
    assert "bus.testing.plugin.bus_recorder" in names  # a fixture, not in __all__


def test_every_public_name_has_a_docstring() -> None:
    """What the reference renders: the names, and the methods and properties of the
    classes users handle. A constant is documented by ``#:`` lines right above it."""
    api = _api()
    missing = []
    for dotted, module in _public_names(api).items():
        try:
            obj = _griffe_object(api, dotted)
        except Exception as error:
            missing.append(f"{dotted} (griffe cannot find it: {error})")
            continue
        if not _has_docstring(obj):
            missing.append(dotted)
        if module in MEMBERS_DOCUMENTED and obj.is_class:
            for name, member in obj.members.items():
                is_method = member.is_function or "property" in member.labels
                if not name.startswith("_") and is_method and not _has_docstring(member):
                    missing.append(f"{dotted}.{name}")
    assert not missing, f"{len(missing)} public name(s) without a docstring:\n  " + "\n  ".join(
        missing
    )


def _directives() -> dict[str, dict[str, Any]]:
    """``::: name`` directives of docs/reference/ -> their options."""
    yaml = pytest.importorskip("yaml")
    found: dict[str, dict[str, Any]] = {}
    for page, text in REFERENCE.items():
        for match in _DIRECTIVE.finditer(text):
            block = yaml.safe_load(textwrap.dedent(match.group(2))) if match.group(2) else None
            options = (block or {}).get("options") or {}
            assert match.group(1) not in found, f"{page}: ::: {match.group(1)} again"
            found[match.group(1)] = options
    return found


def test_the_reference_pages_have_directives() -> None:
    assert "reference/index.md" in REFERENCE
    assert "bus.Producer" in _directives()


def test_every_public_name_is_in_the_reference() -> None:
    """Each public name has a ``::: name`` directive in docs/reference/, or its module
    has one that renders its members (no ``members: false``)."""
    directives = _directives()
    missing = []
    for dotted, module in _public_names(_api()).items():
        if dotted in directives:
            continue
        # A module's directive renders every public member unless `members` says otherwise.
        members = directives[module].get("members") if module in directives else False
        covered = (
            members is None
            or members is True
            or (isinstance(members, list) and dotted.rsplit(".", 1)[1] in members)
        )
        if not covered:
            missing.append(f"::: {dotted}")
    assert not missing, (
        f"{len(missing)} public name(s) missing from docs/reference/ (add each to the page "
        "of its topic):\n  " + "\n  ".join(missing)
    )


def test_the_reference_documents_only_public_names() -> None:
    """A directive for a name that is no longer public (renamed, removed from
    ``__all__``) is stale."""
    names = _public_names(_api())
    modules = {"bus", "bus.spi", "bus.hookspecs", *TESTING_MODULES}
    stale = [d for d in _directives() if d not in names and d not in modules]
    assert not stale, "directives for names that are not public: " + ", ".join(stale)


def test_the_testing_page_covers_the_fixtures() -> None:
    text = PAGES.get("testing.md", "")
    for fixture in _fixtures(_api()):
        assert f"`{fixture}`" in text, f"docs/testing.md does not mention fixture {fixture}"
    for word in ("--bus-url", "BUS_TEST_URL", "assert_produced", "bus.testing.strategies"):
        assert word in text, f"docs/testing.md does not mention {word}"
