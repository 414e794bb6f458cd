"""What every flowport Block shares: clients made lazily, once per process, never pickled; how
blocks present themselves in Prefect's block catalog (logo, documentation link, human field
titles, code example, install hint); and the refusal of prefect-aws / prefect-gcp /
prefect-sqlalchemy blocks passed where a flowport block is expected."""

from __future__ import annotations

import ast
import base64
import importlib.resources
import inspect
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, HttpUrl, PrivateAttr

from flowport.errors import ConfigError

C = TypeVar("C")
B = TypeVar("B", bound=type)

#: Where flowport's documentation is published; block pages link into it.
DOCS_URL = "https://flowport.readthedocs.io/en/latest/"

# -- the block catalog -----------------------------------------------------------------------

#: Words of field names written as people write them (``aws_access_key_id`` -> "AWS access
#: key ID").
_WORDS = {
    "api": "API",
    "arn": "ARN",
    "aws": "AWS",
    "ca": "CA",
    "csek": "CSEK",
    "gcp": "GCP",
    "id": "ID",
    "json": "JSON",
    "kms": "KMS",
    "sasl": "SASL",
    "sql": "SQL",
    "ssl": "SSL",
    "tls": "TLS",
    "url": "URL",
}


def field_title(name: str, info: Any = None) -> str:
    """A human title for a field: sentence case with acronyms kept ("AWS access key ID").

    Blocks use it as pydantic's ``field_title_generator`` (see :data:`BLOCK_CONFIG`), so
    Prefect's forms show it instead of pydantic's "Aws Access Key Id"."""
    words = [_WORDS.get(word, word) for word in name.split("_") if word]
    if words and words[0].islower():
        words[0] = words[0].capitalize()
    return " ".join(words)


#: The model config of flowport's blocks: human field titles.
BLOCK_CONFIG = ConfigDict(field_title_generator=field_title)


def docs_url(page: str = "") -> HttpUrl:
    """The URL of a page of flowport's documentation (``docs_url("connectors/s3/")``)."""
    return HttpUrl(DOCS_URL + page.lstrip("/"))


def logo_url(package: str) -> HttpUrl:
    """Where the documentation site publishes the logo ``package`` ships (``logo.svg``).

    Prefect's client accepts only http(s) logo URLs (a ``data:`` URL fails its ``HttpUrl``
    check when the block type is registered, and when any block document is read back), so
    the catalog links to the published copy of the packaged file; :func:`logo_data_url`
    gives the same image inline."""
    return docs_url(f"logos/{package}.svg")


def logo_svg(package: str) -> str:
    """The SVG text of the logo shipped in ``package`` (package data: ``<package>/logo.svg``)."""
    return importlib.resources.files(package).joinpath("logo.svg").read_text(encoding="utf-8")


def logo_data_url(package: str) -> str:
    """The packaged logo as a ``data:image/svg+xml;base64,...`` URL (docs, custom UIs)."""
    data = base64.b64encode(logo_svg(package).encode("utf-8")).decode("ascii")
    return f"data:image/svg+xml;base64,{data}"


def install_hint(distribution: str) -> str:
    """The install line block descriptions end with."""
    return f"Install: `pip install {distribution}`."


_FENCED = re.compile(r"```python\n(.*?)```", re.DOTALL)


def code_example_source(block: type) -> str:
    """The Python code of a block's catalog code example (the fenced ``python`` parts)."""
    example = getattr(block, "get_code_example", lambda: None)() or ""
    return "\n".join(part for part in _FENCED.findall(example))


def _unresolved_imports(tree: ast.Module) -> list[str]:
    """``from x import y`` lines of a code example whose module or name does not exist."""
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                problems.append(f"the code example imports {node.module}, which is missing")
                continue
            problems += [
                f"the code example imports {alias.name} from {node.module}, which has none"
                for alias in node.names
                if not hasattr(module, alias.name)
            ]
    return problems


def catalog_problems(block: type, package: str | None = None) -> list[str]:
    """What a block lacks in Prefect's catalog: logo, documentation link, human titles, a code
    example that parses and imports what exists, an install hint. Empty when it is complete
    (connector tests assert this for every block). ``package`` ships the logo (default: the
    block's top-level package)."""
    name = block.__name__
    problems: list[str] = []
    package = package or block.__module__.split(".")[0]
    try:
        root = ET.fromstring(logo_svg(package))  # noqa: S314 (the package's own file)
        if not root.tag.endswith("svg"):
            problems.append(f"{name}: {package}/logo.svg is not an SVG")
    except (OSError, ET.ParseError) as exc:
        problems.append(f"{name}: no readable {package}/logo.svg ({exc})")
    if str(getattr(block, "_logo_url", None)) != str(logo_url(package)):
        problems.append(f"{name}: _logo_url is not logo_url({package!r})")
    if not str(getattr(block, "_documentation_url", None) or "").startswith(DOCS_URL):
        problems.append(f"{name}: _documentation_url does not link into {DOCS_URL}")
    description = str(getattr(block, "_description", None) or "")
    if "pip install " not in description:
        problems.append(f"{name}: the description has no install hint")
    example = str(getattr(block, "_code_example", None) or "")
    for part, text in (("description", description), ("code example", example)):
        if any(char in text for char in "<>&"):
            # Prefect's server stores them HTML-escaped; the UI then shows "-&gt;".
            problems.append(f"{name}: the {part} has <, > or &, which the UI shows escaped")
    source = code_example_source(block)
    if getattr(block, "_code_example", None) is None or not source.strip():
        problems.append(f"{name}: no _code_example with a ```python block")
    else:
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            problems.append(f"{name}: the code example does not parse ({exc})")
        else:
            problems += [f"{name}: {p}" for p in _unresolved_imports(tree)]
    fields: Mapping[str, Any] = getattr(block, "model_fields", {})
    for field_name, info in fields.items():
        generic = " ".join(word.capitalize() for word in field_name.split("_"))
        if not info.title and "_" in field_name:
            problems.append(f"{name}.{field_name}: no human title")
        elif info.title == generic and generic != field_title(field_name):
            problems.append(f"{name}.{field_name}: title {info.title!r} is pydantic's default")
    return problems


# -- blocks of Prefect's own integrations ----------------------------------------------------

#: Packages whose blocks flowport's replace: module -> distribution.
FOREIGN_PACKAGES = {
    "prefect_aws": "prefect-aws",
    "prefect_gcp": "prefect-gcp",
    "prefect_sqlalchemy": "prefect-sqlalchemy",
}


@dataclass(frozen=True)
class Migration:
    """How a block of a Prefect integration (``prefect_aws.AwsCredentials``) maps onto a
    flowport block: its fields -> ours (an empty target: no equivalent)."""

    foreign: str
    block: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        pairs = "; ".join(f"{k} -> {v or '(no equivalent)'}" for k, v in self.fields.items())
        return f"{self.block}, mapping {pairs}" if pairs else self.block


#: Every known migration, by foreign block (``prefect_aws.AwsCredentials``); connectors add
#: theirs with :func:`replaces`.
MIGRATIONS: dict[str, Migration] = {}


def replaces(foreign: str, fields: Mapping[str, str]) -> Callable[[B], B]:
    """Class decorator: this block replaces ``foreign`` ("prefect_aws.AwsCredentials");
    ``fields`` maps its fields onto ours, for the message that refuses it."""

    def register(cls: B) -> B:
        ours = f"{cls.__module__.split('.')[0]}.{cls.__name__}"
        MIGRATIONS[foreign] = Migration(foreign, ours, dict(fields))
        return cls

    return register


def foreign_block_error(value: Any, *, where: str, expected: str) -> ConfigError | None:
    """A ConfigError if ``value`` is a block of prefect-aws, prefect-gcp or prefect-sqlalchemy
    (told by its class's module, so none of them need be installed), else None.

    The message names the block, says flowport's blocks do not take it, and how its fields
    map onto ``expected``; it never shows a value."""
    cls = type(value)
    package = cls.__module__.split(".")[0]
    distribution = FOREIGN_PACKAGES.get(package)
    if distribution is None:
        return None
    foreign = f"{package}.{cls.__name__}"
    migration = MIGRATIONS.get(foreign)
    use = migration.describe() if migration else expected
    return ConfigError(
        f"{where} got a {distribution} block ({foreign}); flowport's blocks do not take "
        f"{distribution} blocks. Use {use}. Migration guide: {docs_url('migration/')}",
        system=distribution,
        target=where,
    )


def refuse_foreign(value: Any, *, where: str, expected: str) -> None:
    """Raise :func:`foreign_block_error`'s ConfigError for a prefect-aws/-gcp/-sqlalchemy block."""
    error = foreign_block_error(value, where=where, expected=expected)
    if error is not None:
        raise error


def refuse_foreign_arguments(task: str, signature: inspect.Signature, arguments: Any) -> None:
    """Refuse a prefect-aws/-gcp/-sqlalchemy block passed as any argument of a flowport task."""
    for name, value in dict(arguments).items():
        if type(value).__module__.split(".")[0] in FOREIGN_PACKAGES:
            param = signature.parameters.get(name)
            annotation = param.annotation if param is not None else inspect.Parameter.empty
            if annotation is inspect.Parameter.empty:
                expected = "a flowport block"
            else:
                expected = f"flowport's {getattr(annotation, '__name__', annotation)}"
            refuse_foreign(value, where=f"{task}({name}=...)", expected=expected)


# -- lazy clients ----------------------------------------------------------------------------


class LazyClients(BaseModel):
    """Mixin for Prefect Blocks (pydantic models): ``self._client("s3", make)`` builds a client
    on first use in this process and reuses it after. Pickling drops the cache, so a block sent
    to another process (Dask worker, subprocess) builds its own clients there.

    A BaseModel itself: pydantic collects private attributes only from model classes (on a
    plain mixin they stayed unset ``ModelPrivateAttr`` objects)."""

    _clients: dict[str, Any] = PrivateAttr(default_factory=dict)
    _clients_pid: int = PrivateAttr(default=0)
    _clients_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def _client(self, name: str, make: Callable[[], C]) -> C:
        with self._clients_lock:
            if self._clients_pid != os.getpid():  # forked or unpickled: start afresh
                self._clients, self._clients_pid = {}, os.getpid()
            if name not in self._clients:
                self._clients[name] = make()
            return self._clients[name]  # type: ignore[no-any-return]

    def _drop_clients(self) -> list[Any]:
        """Forget the cached clients and return them (for the caller to close)."""
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        return clients

    def _fresh_clients(self) -> Any:
        # A copy (``model_copy(update=...)`` may change the endpoint or a secret) never
        # shares its original's clients.
        self._clients, self._clients_pid, self._clients_lock = {}, 0, threading.Lock()
        return self

    def __copy__(self) -> Any:
        return super().__copy__()._fresh_clients()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        memo = {} if memo is None else memo
        memo[id(self._clients)] = {}  # clients are not deep-copied (most cannot be)
        memo[id(self._clients_lock)] = None
        return super().__deepcopy__(memo)._fresh_clients()

    def __getstate__(self) -> dict[Any, Any]:
        state: dict[Any, Any] = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private.update(_clients={}, _clients_pid=0, _clients_lock=None)
        state["__pydantic_private__"] = private
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._clients_lock = threading.Lock()
