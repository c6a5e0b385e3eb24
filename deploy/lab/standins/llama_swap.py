#!/usr/bin/env python3
"""STAND-IN for llama-swap (``llama-swap -config config.yaml -listen :8080 [-watch-config]``).

The real llama-swap release cannot be downloaded here, so this single stdlib-only module plays
it (see shared/reference/backends.md, section b): the same config.yaml schema, the same HTTP
endpoints, and the same swap rules (groups with swap/exclusive/persistent, FIFO queue that
joins an in-flight swap, never evicts a model with requests in flight, concurrencyLimit -> 429,
ttl/globalTTL unload, checkEndpoint readiness, -watch-config stops every model on reload).

Two ways to run each model, chosen by the stand-in-only environment variable STANDIN_MODE:
  simulate (default)  no process is started: a model "loads" in a time proportional to its size
                      (``metadata.size_mb``, else the size of the ``-m``/``--model`` file in
                      ``cmd``, else 1 GiB) and serves llama-server-shaped fake replies.
  exec                like llama-swap: ``cmd`` is exec'd (``${PORT}`` and macros substituted,
                      no shell), ``checkEndpoint`` is polled, requests are proxied byte for byte
                      to ``proxy``, and unloads send SIGTERM to the process group (SIGKILL after
                      unloadTimeout). With a real llama-server this gives real inference.
  auto                exec when the first word of ``cmd`` is an executable, else simulate.

Other stand-in knobs: STANDIN_LOAD_MS_PER_GB (200), STANDIN_TOKENS_PER_S (50; 0 = no delay),
STANDIN_HEALTH_POLL_MS (1000, llama-swap's poll interval), STANDIN_TTL_TICK_MS (1000).
Simplified: no UI, /logs, /metrics, /api/events, filters, peers, matrix routing or profiles.
The YAML reader understands the block/flow subset llama-swap configs use (no anchors).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import http.server
import json
import logging
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

VERSION = "247"
COMMIT = "standin"
DEFAULT_CONCURRENCY_LIMIT = 10
DEFAULT_MODEL_BYTES = 1024**3
GB = 1024**3
MB = 1024**2
LOGGER = logging.getLogger("llama-swap-standin")


class ConfigError(ValueError):
    """A config.yaml problem; the message names the file and the key or line."""


# --------------------------------------------------------------------------- YAML subset


class _Yaml:
    """Indentation-based YAML reader for the subset llama-swap configs use: block mappings and
    sequences, ``- key: value`` items, flow ``[..]``/``{..}``, quoted and plain scalars, block
    scalars ``|``/``>`` with chomping, comments. Anchors, aliases and tags are rejected."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source
        self.i = 0

    def error(self, message: str, line: int | None = None) -> ConfigError:
        return ConfigError(f"{self.source}:{(line if line is not None else self.i) + 1}: {message}")

    def parse(self) -> Any:
        self._skip_blank()
        if self.i >= len(self.lines):
            return None
        value = self._block(self._indent(self.i))
        self._skip_blank()
        if self.i < len(self.lines):
            raise self.error("unexpected content (check the indentation)")
        return value

    # -- lines

    def _indent(self, index: int) -> int:
        line = self.lines[index]
        lead = line[: len(line) - len(line.lstrip())]
        if "\t" in lead:
            raise self.error("tabs are not allowed for indentation", index)
        return len(lead)

    def _skip_blank(self) -> None:
        while self.i < len(self.lines):
            text = self.lines[self.i].strip()
            if text and not text.startswith("#") and text != "---":
                return
            self.i += 1

    @staticmethod
    def _is_item(content: str) -> bool:
        return content == "-" or content.startswith("- ")

    # -- block structures

    def _block(self, indent: int) -> Any:
        if self._is_item(self.lines[self.i].strip()):
            return self._sequence(indent)
        return self._mapping(indent)

    def _sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while True:
            self._skip_blank()
            if self.i >= len(self.lines) or self._indent(self.i) < indent:
                return items
            content = self.lines[self.i].strip()
            if self._indent(self.i) > indent:
                raise self.error("bad indentation in a list")
            if not self._is_item(content):
                return items
            rest = content[1:].lstrip()
            if not rest or rest.startswith("#"):
                self.i += 1
                items.append(self._nested_or_none(indent))
            elif self._is_item(rest) or self._split_key(rest, strict=False) is not None:
                # "- key: v" opens a mapping (and "- - x" a list) at the column of its content
                column = indent + len(content) - len(rest)
                self.lines[self.i] = " " * column + rest
                items.append(self._block(column))
            else:
                self.i += 1
                items.append(self._value(rest, indent))

    def _mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while True:
            self._skip_blank()
            if self.i >= len(self.lines) or self._indent(self.i) < indent:
                return result
            if self._indent(self.i) > indent:
                raise self.error("bad indentation in a mapping")
            content = self.lines[self.i].strip()
            if self._is_item(content):
                raise self.error("a list item where a 'key: value' was expected")
            split = self._split_key(content, strict=True)
            assert split is not None
            key, rest = split
            if key == "<<" or rest.startswith(("&", "*", "!")):
                raise self.error("YAML anchors, aliases, merge keys and tags are not supported")
            if key in result:
                raise self.error(f"duplicate key {key!r}")
            self.i += 1
            rest = self._strip_comment(rest)
            if rest:
                result[key] = self._value(rest, indent)
                continue
            self._skip_blank()
            if (
                self.i < len(self.lines)
                and self._indent(self.i) == indent
                and self._is_item(self.lines[self.i].strip())
            ):
                result[key] = self._sequence(indent)  # "key:\n- a" (list at the key's column)
            else:
                result[key] = self._nested_or_none(indent)

    def _nested_or_none(self, indent: int) -> Any:
        self._skip_blank()
        if self.i < len(self.lines) and self._indent(self.i) > indent:
            return self._block(self._indent(self.i))
        return None

    def _split_key(self, content: str, *, strict: bool) -> tuple[str, str] | None:
        if content[0] in "\"'":
            end = self._quoted_end(content, 0)
            key, after = self._scalar(content[: end + 1]), content[end + 1 :].lstrip()
            if after.startswith(":") and (len(after) == 1 or after[1] in " \t"):
                return str(key), after[1:].strip()
        elif content[0] not in "[{":
            match = re.search(r":(\s|$)", content)
            if match and "#" not in content[: match.start()].replace("\\#", ""):
                return content[: match.start()].strip(), content[match.end() :].strip()
        if strict:
            raise self.error(f"expected 'key: value', got {content!r}")
        return None

    # -- values

    def _value(self, text: str, indent: int) -> Any:
        text = self._strip_comment(text)
        if text.startswith(("|", ">")):
            return self._block_scalar(text, indent)
        if text.startswith(("[", "{")):
            while self._unbalanced(text) and self.i < len(self.lines):
                text += " " + self._strip_comment(self.lines[self.i].strip())
                self.i += 1
            value, end = self._flow(text, 0)
            if text[end:].strip():
                raise self.error(
                    f"unexpected {text[end:].strip()!r} after a flow value", self.i - 1
                )
            return value
        if text[0] in "\"'":
            if self._quoted_end(text, 0) != len(text) - 1:
                raise self.error(f"unexpected text after the quoted string {text!r}", self.i - 1)
            return self._scalar(text)
        if text.startswith(("&", "*", "!")):
            raise self.error("YAML anchors, aliases and tags are not supported", self.i - 1)
        while (  # a plain scalar may continue on more-indented lines (folded with spaces)
            self.i < len(self.lines)
            and self.lines[self.i].strip()
            and not self.lines[self.i].strip().startswith("#")
            and self._indent(self.i) > indent
        ):
            more = self._strip_comment(self.lines[self.i].strip())
            if re.search(r":(\s|$)", more):
                raise self.error(
                    "a 'key: value' nested under a plain value (check the indentation)"
                )
            text += " " + more
            self.i += 1
        return self._scalar(text)

    def _block_scalar(self, header: str, indent: int) -> str:
        match = re.fullmatch(r"([|>])([+-]?)(\d?)([+-]?)", header.strip())
        if not match:
            raise self.error(f"bad block scalar header {header!r}", self.i - 1)
        style, chomp = match.group(1), match.group(2) or match.group(4)
        raw: list[str] = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() and self._indent(self.i) <= indent:
                break
            raw.append(line)
            self.i += 1
        content = [ln for ln in raw if ln.strip()]
        block_indent = (
            indent + int(match.group(3))
            if match.group(3)
            else min((len(ln) - len(ln.lstrip()) for ln in content), default=0)
        )
        lines = [ln[block_indent:] if ln.strip() else "" for ln in raw]
        while lines and not lines[-1]:
            lines.pop()
        trailing = len(raw) - len(lines)
        if style == "|":
            body = "\n".join(lines)
        else:  # folded: single newlines become spaces, blank lines become newlines
            body = ""
            for n, line in enumerate(lines):
                if n == 0:
                    body = line
                elif not line:
                    body += "\n"
                elif body.endswith("\n") or lines[n - 1].startswith(" "):
                    body += line if body.endswith("\n") else "\n" + line
                else:
                    body += " " + line
        if chomp == "-":
            return body
        if chomp == "+":
            return body + "\n" * (trailing + 1)
        return body + "\n" if body else ""

    @staticmethod
    def _strip_comment(text: str) -> str:
        quote = ""
        for n, char in enumerate(text):
            if quote:
                if char == quote:
                    quote = ""
            elif char in "\"'" and (n == 0 or text[n - 1] in " [{,:"):
                quote = char
            elif char == "#" and (n == 0 or text[n - 1] in " \t"):
                return text[:n].rstrip()
        return text.strip()

    @staticmethod
    def _unbalanced(text: str) -> bool:
        depth, quote = 0, ""
        for char in text:
            if quote:
                quote = "" if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
        return depth > 0

    def _quoted_end(self, text: str, start: int) -> int:
        quote, n = text[start], start + 1
        while n < len(text):
            if quote == '"' and text[n] == "\\":
                n += 2
                continue
            if text[n] == quote:
                if quote == "'" and text[n + 1 : n + 2] == "'":
                    n += 2
                    continue
                return n
            n += 1
        raise self.error(f"unterminated quoted string {text[start:]!r}", self.i)

    def _flow(self, text: str, pos: int) -> tuple[Any, int]:
        pos = self._skip_spaces(text, pos)
        if pos >= len(text):
            raise self.error("unexpected end of a flow value", self.i - 1)
        if text[pos] in "[{":
            closing = "]" if text[pos] == "[" else "}"
            items: list[Any] = []
            mapping: dict[str, Any] = {}
            pos += 1
            while True:
                pos = self._skip_spaces(text, pos)
                if pos < len(text) and text[pos] == closing:
                    return (items if closing == "]" else mapping), pos + 1
                value, pos = self._flow(text, pos)
                pos = self._skip_spaces(text, pos)
                if closing == "}":
                    if pos >= len(text) or text[pos] != ":":
                        raise self.error("expected ':' in a flow mapping", self.i - 1)
                    item, pos = self._flow(text, pos + 1)
                    mapping[str(value)] = item
                    pos = self._skip_spaces(text, pos)
                else:
                    items.append(value)
                if pos < len(text) and text[pos] == ",":
                    pos += 1
                elif pos >= len(text) or text[pos] != closing:
                    raise self.error(f"expected ',' or '{closing}' in a flow value", self.i - 1)
        if text[pos] in "\"'":
            end = self._quoted_end(text, pos)
            return self._scalar(text[pos : end + 1]), end + 1
        match = re.compile(r"[^,\[\]{}]*?(?=\s*(?:[,\]}]|:\s|$))").match(text, pos)
        end = match.end() if match else len(text)
        return self._scalar(text[pos:end].strip()), end

    @staticmethod
    def _skip_spaces(text: str, pos: int) -> int:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        return pos

    @staticmethod
    def _scalar(text: str) -> Any:
        if text.startswith('"'):
            escapes = {
                "n": "\n",
                "t": "\t",
                "r": "\r",
                "0": "\0",
                '"': '"',
                "\\": "\\",
                "/": "/",
                " ": " ",
                "e": "\x1b",
                "a": "\a",
                "b": "\b",
            }

            def unescape(match: re.Match[str]) -> str:
                code = match.group(1)
                if code[0] in "xuU":
                    return chr(int(code[1:], 16))
                return escapes.get(code, "\\" + code)

            return re.sub(
                r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", unescape, text[1:-1]
            )
        if text.startswith("'"):
            return text[1:-1].replace("''", "'")
        if text in ("true", "True", "TRUE"):
            return True
        if text in ("false", "False", "FALSE"):
            return False
        if text in ("", "~", "null", "Null", "NULL"):
            return None
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        if re.fullmatch(r"0x[0-9a-fA-F]+", text):
            return int(text, 16)
        if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", text):
            return float(text)
        return text


def load_yaml(text: str, source: str = "<config>") -> Any:
    """Parse the YAML subset llama-swap configs use. Example: ``load_yaml("a: [1, 2]")``."""
    return _Yaml(text, source).parse()


# --------------------------------------------------------------------------- config

MACRO_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
MACRO_REF = re.compile(r"\$\{([^}]+)\}")
RESERVED_MACROS = ("PORT", "PID", "MODEL_ID")
KNOWN_TOP_LEVEL = {
    "healthCheckTimeout",
    "logLevel",
    "logTimeFormat",
    "logToStdout",
    "logRequests",
    "metricsMaxInMemory",
    "captureBuffer",
    "store",
    "ui",
    "performance",
    "startPort",
    "sendLoadingState",
    "includeAliasesInList",
    "globalTTL",
    "unloadTimeout",
    "macros",
    "apiKeys",
    "upstream",
    "profiles",
    "selectors",
    "models",
    "hooks",
    "routing",
    "groups",
    "matrix",
    "peers",
}
KNOWN_MODEL_KEYS = {
    "cmd",
    "cmdStop",
    "proxy",
    "checkEndpoint",
    "ttl",
    "unloadTimeout",
    "aliases",
    "env",
    "unlisted",
    "useModelName",
    "name",
    "description",
    "concurrencyLimit",
    "sendLoadingState",
    "filters",
    "macros",
    "metadata",
    "timeouts",
    "compat",
    "capabilities",
}


@dataclass
class ModelConfig:
    """One ``models.<id>`` entry, macros already substituted."""

    id: str
    cmd: list[str]
    cmd_stop: str = ""
    proxy: str = ""
    check_endpoint: str = "/health"
    ttl: int = 0  # seconds; 0 = never unload
    unload_timeout: int = 10
    aliases: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    unlisted: bool = False
    use_model_name: str = ""
    name: str = ""
    description: str = ""
    concurrency_limit: int = DEFAULT_CONCURRENCY_LIMIT
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupConfig:
    name: str
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    members: list[str] = field(default_factory=list)


@dataclass
class Config:
    models: dict[str, ModelConfig]
    groups: dict[str, GroupConfig]
    health_check_timeout: int = 120
    start_port: int = 5800
    global_ttl: int = 0
    include_aliases_in_list: bool = False
    api_keys: list[str] = field(default_factory=list)
    preload: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def resolve(self, name: str) -> str | None:
        """A model id or alias -> the model id."""
        if name in self.models:
            return name
        for model in self.models.values():
            if name in model.aliases:
                return model.id
        return None

    def group_of(self, model_id: str) -> GroupConfig:
        for group in self.groups.values():
            if model_id in group.members:
                return group
        raise KeyError(model_id)


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind in (int, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: expected {names}, got {value!r}")
    return value


def _substitute(text: str, macros: dict[str, str], where: str, keep: tuple[str, ...]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("env."):
            if name[4:] not in os.environ:
                raise ConfigError(f"{where}: environment variable {name[4:]} is not set")
            return os.environ[name[4:]]
        if name in macros:
            return macros[name]
        if name in keep:
            return match.group(0)
        raise ConfigError(f"{where}: unknown macro '${{{name}}}'")

    return MACRO_REF.sub(replace, text)


def _macros(raw: Any, where: str, inherited: dict[str, str]) -> dict[str, str]:
    macros = dict(inherited)
    for name, value in (_typed(raw or {}, dict, where)).items():
        if not MACRO_NAME.match(str(name)) or name in RESERVED_MACROS:
            raise ConfigError(f"{where}.{name}: invalid or reserved macro name")
        if isinstance(value, dict | list) or value is None:
            raise ConfigError(f"{where}.{name}: a macro must be a string, number or bool")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        macros[str(name)] = _substitute(text, macros, f"{where}.{name}", ())
    return macros


def split_cmd(cmd: str) -> list[str]:
    """llama-swap's cmd: multi-line, ``#`` comment lines dropped, split like a shell (no shell)."""
    kept = [
        line for line in cmd.replace("\\\n", " ").splitlines() if not line.strip().startswith("#")
    ]
    return shlex.split(" ".join(kept))


def parse_config(data: Any, source: str = "config.yaml") -> Config:
    """Validate a parsed config.yaml the way llama-swap does; errors name the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a mapping")
    warnings = [f"{source}: unknown key '{k}' ignored" for k in data if k not in KNOWN_TOP_LEVEL]
    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise ConfigError(f"{source}: 'models' is required and must map model ids to settings")
    health_timeout = max(
        15, _typed(data.get("healthCheckTimeout", 120), int, f"{source}: healthCheckTimeout")
    )
    start_port = _typed(data.get("startPort", 5800), int, f"{source}: startPort")
    global_ttl = _typed(data.get("globalTTL", 0), int, f"{source}: globalTTL")
    global_unload = _typed(data.get("unloadTimeout", 10), int, f"{source}: unloadTimeout")
    macros = _macros(data.get("macros"), f"{source}: macros", {})

    models: dict[str, ModelConfig] = {}
    next_port = start_port
    for model_id in sorted(raw_models, key=str):  # ports go out in sorted id order
        where = f"{source}: models.{model_id}"
        raw = _typed(raw_models[model_id] or {}, dict, where)
        warnings += [
            f"{where}: unknown key '{k}' ignored" for k in raw if k not in KNOWN_MODEL_KEYS
        ]
        if not raw.get("cmd"):
            raise ConfigError(f"{where}.cmd is required")
        local = _macros(raw.get("macros"), f"{where}.macros", macros)
        local["MODEL_ID"] = str(model_id)
        cmd_text = str(raw["cmd"])
        if "${PORT}" in cmd_text:
            local["PORT"] = str(next_port)
            next_port += 1
        cmd = split_cmd(_substitute(cmd_text, local, f"{where}.cmd", ()))
        proxy_text = str(raw.get("proxy") or "http://localhost:${PORT}")
        if "${PORT}" in proxy_text and "PORT" not in local:
            raise ConfigError(
                f"{where}.proxy: proxy uses ${{PORT}} but cmd does not - ${{PORT}} is only "
                "available when used in cmd (the default proxy is http://localhost:${PORT})"
            )
        if not cmd:
            raise ConfigError(f"{where}.cmd is empty")
        ttl = _typed(raw.get("ttl", -1), int, f"{where}.ttl")
        ttl = global_ttl if ttl == -1 else ttl  # -1 (unset): globalTTL; 0: never unload
        if ttl < 0:
            raise ConfigError(f"{where}.ttl: invalid TTL value {ttl}")
        env: dict[str, str] = {}
        for n, line in enumerate(_typed(raw.get("env") or [], list, f"{where}.env")):
            key, sep, value = str(line).partition("=")
            if not sep or not key:
                raise ConfigError(f"{where}.env[{n}]: expected KEY=value, got {line!r}")
            env[key] = _substitute(value, local, f"{where}.env[{n}]", ())
        limit = _typed(raw.get("concurrencyLimit", 0), int, f"{where}.concurrencyLimit")
        models[str(model_id)] = ModelConfig(
            id=str(model_id),
            cmd=cmd,
            cmd_stop=_substitute(
                str(raw.get("cmdStop") or ""), local, f"{where}.cmdStop", ("PID",)
            ),
            proxy=_substitute(proxy_text, local, f"{where}.proxy", ()),
            check_endpoint=str(raw.get("checkEndpoint") or "/health"),
            ttl=ttl,
            unload_timeout=_typed(raw.get("unloadTimeout", 0), int, f"{where}.unloadTimeout")
            or global_unload,
            aliases=[str(a) for a in _typed(raw.get("aliases") or [], list, f"{where}.aliases")],
            env=env,
            unlisted=bool(raw.get("unlisted", False)),
            use_model_name=str(raw.get("useModelName") or ""),
            name=str(raw.get("name") or ""),
            description=str(raw.get("description") or ""),
            concurrency_limit=limit or DEFAULT_CONCURRENCY_LIMIT,
            metadata=_typed(raw.get("metadata") or {}, dict, f"{where}.metadata"),
        )
    _check_aliases(models, source)
    groups = _parse_groups(data, models, source)
    hooks = _typed(data.get("hooks") or {}, dict, f"{source}: hooks")
    startup = _typed(hooks.get("on_startup") or {}, dict, f"{source}: hooks.on_startup")
    preload = [str(m) for m in _typed(startup.get("preload") or [], list, f"{source}: preload")]
    for name in preload:
        if name not in models:
            raise ConfigError(f"{source}: hooks.on_startup.preload: unknown model {name!r}")
    keys = [str(k) for k in _typed(data.get("apiKeys") or [], list, f"{source}: apiKeys")]
    return Config(
        models,
        groups,
        health_timeout,
        start_port,
        global_ttl,
        bool(data.get("includeAliasesInList", False)),
        keys,
        preload,
        warnings,
    )


def _check_aliases(models: dict[str, ModelConfig], source: str) -> None:
    owner: dict[str, str] = {}
    for model in models.values():
        for alias in model.aliases:
            if alias in models:
                raise ConfigError(f"{source}: models.{model.id}.aliases: {alias!r} is a model id")
            if alias in owner:
                raise ConfigError(
                    f"{source}: duplicate alias {alias!r} in models.{owner[alias]} "
                    f"and models.{model.id}"
                )
            owner[alias] = model.id


def _parse_groups(
    data: dict[str, Any], models: dict[str, ModelConfig], source: str
) -> dict[str, GroupConfig]:
    raw = data.get("groups")
    where = f"{source}: groups"
    routing = data.get("routing")
    if raw is None and isinstance(routing, dict):  # the June 2026 `routing:` form
        router = routing.get("router") or {}
        if (router.get("use") or "group") != "group":
            raise ConfigError(f"{source}: routing.router.use: only 'group' is supported")
        raw = (router.get("settings") or {}).get("groups")
        where = f"{source}: routing.router.settings.groups"
    groups: dict[str, GroupConfig] = {}
    member_of: dict[str, str] = {}
    for name, spec in _typed(raw or {}, dict, where).items():
        spec = _typed(spec or {}, dict, f"{where}.{name}")
        members = [
            str(m) for m in _typed(spec.get("members") or [], list, f"{where}.{name}.members")
        ]
        for member in members:
            if member not in models:
                raise ConfigError(f"{where}.{name}.members: unknown model {member!r}")
            if member in member_of:
                raise ConfigError(
                    f"{where}: model {member!r} is in groups {member_of[member]!r} and {name!r}"
                )
            member_of[member] = str(name)
        groups[str(name)] = GroupConfig(
            str(name),
            swap=bool(spec.get("swap", True)),
            exclusive=bool(spec.get("exclusive", True)),
            persistent=bool(spec.get("persistent", False)),
            members=members,
        )
    loose = [m for m in models if m not in member_of]
    if loose:  # ungrouped models share an implicit swap + exclusive group
        groups["(default)"] = GroupConfig("(default)", members=loose)
    return groups


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from None
    return parse_config(load_yaml(text, str(path)), str(path))


# --------------------------------------------------------------------------- model processes


class UpstreamError(Exception):
    """A model failed to start or its upstream failed: answered with 502."""


class Upstream(Protocol):
    """How one model runs: simulated in-process, or a real exec'd command."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def serve(self, h: Handler, path: str, body: bytes) -> None: ...


REPLY_TEXT = (
    "the fleet router sends each request to the host where its model already sits in gpu "
    "memory so the answer starts sooner"
)
REPLY_WORDS = REPLY_TEXT.split(" ")


class SimulatedUpstream:
    """A llama-server look-alike: load time from the model size, fake tokens, N slots."""

    def __init__(self, model: ModelConfig, settings: Settings) -> None:
        self.model = model
        self.settings = settings
        self.size = self._size(model)
        self.slot_count = self._slot_count(model)
        self.slots = threading.BoundedSemaphore(self.slot_count)

    @staticmethod
    def _size(model: ModelConfig) -> int:
        meta = model.metadata
        if isinstance(meta.get("size_mb"), int | float):
            return int(meta["size_mb"] * MB)
        for flag in ("-m", "--model"):
            if flag in model.cmd[:-1]:
                path = Path(model.cmd[model.cmd.index(flag) + 1])
                if path.is_file():
                    return path.stat().st_size
        return DEFAULT_MODEL_BYTES

    @staticmethod
    def _slot_count(model: ModelConfig) -> int:
        for flag in ("-np", "--parallel"):
            if flag in model.cmd[:-1] and model.cmd[model.cmd.index(flag) + 1].isdigit():
                return max(1, int(model.cmd[model.cmd.index(flag) + 1]))
        slots = model.metadata.get("slots")
        return slots if isinstance(slots, int) and slots > 0 else 1

    def start(self) -> None:
        time.sleep(self.size / GB * self.settings.load_ms_per_gb / 1000)

    def stop(self) -> None:
        pass

    def serve(self, h: Handler, path: str, body: bytes) -> None:
        path = path.split("?", 1)[0]
        if path in ("/health", "/v1/health"):
            h.send_json(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            h.send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": self.model.id,
                            "object": "model",
                            "owned_by": "llamacpp",
                            "meta": {"size": self.size, "n_ctx_train": 4096},
                        }
                    ],
                },
            )
        elif path == "/props":
            h.send_json(200, {"total_slots": self.slot_count, "model_path": self.model.id})
        elif path in ("/v1/chat/completions", "/v1/completions", "/completion"):
            with self.slots:
                self._complete(h, json.loads(body or b"{}"), chat=path == "/v1/chat/completions")
        elif path == "/v1/responses":
            with self.slots:
                self._responses(h, json.loads(body or b"{}"))
        elif path == "/v1/messages":
            with self.slots:
                self._messages(h, json.loads(body or b"{}"))
        elif path == "/v1/messages/count_tokens":
            h.send_json(200, {"input_tokens": _count_words(_anthropic_prompt(json.loads(body)))})
        elif path == "/v1/embeddings":
            self._embed(h, json.loads(body or b"{}"))
        else:
            h.send_error_json(404, f"File Not Found: {path}")

    def _reply(self, prompt: str, limit: Any) -> tuple[list[str], str, float]:
        """Fake tokens for ``prompt`` (deterministic), why they stop, and the time per token."""
        seed = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
        natural = 8 + seed % 9
        count = min(natural, int(limit)) if isinstance(limit, int) and limit > 0 else natural
        finish = "length" if count < natural else "stop"
        tokens = [
            ("" if i == 0 else " ") + REPLY_WORDS[(seed + i) % len(REPLY_WORDS)]
            for i in range(count)
        ]
        delay = 1 / self.settings.tokens_per_s if self.settings.tokens_per_s > 0 else 0.0
        return tokens, finish, delay

    def _complete(self, h: Handler, req: dict[str, Any], *, chat: bool) -> None:
        if chat:
            prompt = " ".join(str(m.get("content", "")) for m in req.get("messages") or [])
        else:
            prompt = str(req.get("prompt", ""))
        seed = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
        tokens, finish, delay = self._reply(prompt, req.get("max_tokens") or req.get("n_predict"))
        count = len(tokens)
        prompt_n = _count_words(prompt)
        head = {
            "id": f"chatcmpl-{seed % 10**8}",
            "created": int(time.time()),
            "model": req.get("model", self.model.id),
            "system_fingerprint": "b0-standin",
        }
        usage = {
            "prompt_tokens": prompt_n,
            "completion_tokens": count,
            "total_tokens": prompt_n + count,
        }
        timings = {
            "prompt_n": prompt_n,
            "prompt_ms": 0.5 * prompt_n,
            "predicted_n": count,
            "predicted_ms": 1000 * delay * count,
        }
        obj = "chat.completion" if chat else "text_completion"
        if req.get("stream"):
            h.start_stream("text/event-stream")
            for n, token in enumerate([*tokens, None]):
                if token is not None and delay:
                    time.sleep(delay)
                done = token is None
                piece = (
                    {"delta": {"content": token} if not done else {}}
                    if chat
                    else {"text": token or ""}
                )
                chunk = {
                    **head,
                    "object": f"{obj}.chunk" if chat else obj,
                    "choices": [{"index": 0, **piece, "finish_reason": finish if done else None}],
                }
                if n == 0 and chat:
                    chunk["choices"][0]["delta"]["role"] = "assistant"
                if done:
                    chunk.update(usage=usage, timings=timings)
                h.write_chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            h.write_chunk(b"data: [DONE]\n\n")
            h.end_stream()
            return
        if delay:
            time.sleep(delay * count)
        text = "".join(tokens)
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}}
            if chat
            else {"index": 0, "text": text}
        )
        choice["finish_reason"] = finish
        h.send_json(
            200, {**head, "object": obj, "choices": [choice], "usage": usage, "timings": timings}
        )

    def _responses(self, h: Handler, req: dict[str, Any]) -> None:
        """llama-server's ``/v1/responses``: its object and its event sequence, text only."""
        items = req.get("input")
        prompt = items if isinstance(items, str) else _text_of(items)
        if req.get("instructions"):
            prompt = f"{_text_of(req['instructions'])} {prompt}"
        tokens, _, delay = self._reply(prompt, req.get("max_output_tokens"))
        ident = _random_id()
        item: dict[str, Any] = {"type": "message", "status": "in_progress", "id": "msg_" + ident}
        item |= {"content": [], "role": "assistant"}
        response: dict[str, Any] = {"id": "resp_" + ident, "object": "response"}
        response |= {"created_at": int(time.time()), "status": "in_progress"}
        text = "".join(tokens)
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        done_item = {**item, "status": "completed", "content": [part]}
        prompt_n = _count_words(prompt)
        usage: dict[str, Any] = {"input_tokens": prompt_n, "output_tokens": len(tokens)}
        usage |= {
            "total_tokens": prompt_n + len(tokens),
            "input_tokens_details": {"cached_tokens": 0},
        }
        done = {**response, "status": "completed", "model": req.get("model", self.model.id)}
        done |= {"output": [done_item], "usage": usage}
        if not req.get("stream"):
            time.sleep(delay * len(tokens))
            h.send_json(200, done)
            return
        h.start_stream("text/event-stream")
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": response}),
            ("response.in_progress", {"response": response}),
            ("response.output_item.added", {"item": item}),
            ("response.content_part.added", {"item_id": item["id"], "part": {**part, "text": ""}}),
        ]
        _send_events(h, events)
        for token in tokens:
            time.sleep(delay)
            _send_events(
                h, [("response.output_text.delta", {"item_id": item["id"], "delta": token})]
            )
        _send_events(
            h,
            [
                ("response.output_text.done", {"item_id": item["id"], "text": text}),
                ("response.content_part.done", {"item_id": item["id"], "part": part}),
                ("response.output_item.done", {"item": done_item}),
                ("response.completed", {"response": done}),
            ],
        )
        h.end_stream()

    def _messages(self, h: Handler, req: dict[str, Any]) -> None:
        """llama-server's Anthropic ``/v1/messages``: its message and event sequence, text only."""
        prompt = _anthropic_prompt(req)
        tokens, finish, delay = self._reply(prompt, req.get("max_tokens"))
        stop = "max_tokens" if finish == "length" else "end_turn"
        usage = {"cache_read_input_tokens": 0, "input_tokens": _count_words(prompt)}
        message: dict[str, Any] = {"id": "chatcmpl-" + _random_id(), "type": "message"}
        message |= {"role": "assistant", "content": [], "model": req.get("model", self.model.id)}
        message |= {
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 0},
        }
        if not req.get("stream"):
            time.sleep(delay * len(tokens))
            message |= {"content": [{"type": "text", "text": "".join(tokens)}], "stop_reason": stop}
            h.send_json(200, {**message, "usage": {**usage, "output_tokens": len(tokens)}})
            return
        h.start_stream("text/event-stream")
        block = {"index": 0, "content_block": {"type": "text", "text": ""}}
        _send_events(h, [("message_start", {"message": message}), ("content_block_start", block)])
        for token in tokens:
            time.sleep(delay)
            delta = {"index": 0, "delta": {"type": "text_delta", "text": token}}
            _send_events(h, [("content_block_delta", delta)])
        end: dict[str, Any] = {"delta": {"stop_reason": stop, "stop_sequence": None}}
        end["usage"] = {"output_tokens": len(tokens)}
        _send_events(
            h,
            [("content_block_stop", {"index": 0}), ("message_delta", end), ("message_stop", {})],
        )
        h.end_stream()

    def _embed(self, h: Handler, req: dict[str, Any]) -> None:
        # llama-server's own answers (measured): no input is the request's fault, a null or a
        # number gets past that check and fails in its tokenizer with a 500
        if "input" not in req and "content" not in req:
            raise ApiError(400, '"input" or "content" must be provided')
        inputs = req["input"] if "input" in req else req["content"]
        if not isinstance(inputs, str | list):
            raise ApiError(
                500,
                '"prompt" elements must be a string, a list of tokens, a JSON object '
                "containing a prompt string, or a list of mixed strings & tokens.",
            )
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data = []
        for n, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            data.append(
                {
                    "object": "embedding",
                    "index": n,
                    "embedding": [(b - 127.5) / 127.5 for b in digest[:16]],
                }
            )
        tokens = sum(max(1, len(str(t).split())) for t in inputs)
        h.send_json(
            200,
            {
                "object": "list",
                "model": req.get("model"),
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def _count_words(text: str) -> int:
    return max(1, len(text.split()))


def _random_id() -> str:
    """32 letters and digits, as llama-server makes its ``resp_`` / ``msg_`` ids."""
    return secrets.token_hex(16)


def _text_of(content: Any) -> str:
    """The text of a message ``content`` or an ``input`` list: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            _text_of(p.get("text") or p.get("content")) for p in content if isinstance(p, dict)
        )
    return ""


def _anthropic_prompt(req: dict[str, Any]) -> str:
    return " ".join(
        [_text_of(req.get("system"))]
        + [_text_of(m.get("content")) for m in req.get("messages") or [] if isinstance(m, dict)]
    ).strip()


def _send_events(h: Handler, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Server-sent events as llama-server writes them: ``event:`` then ``data:`` with ``type``."""
    for name, obj in events:
        data = json.dumps({"type": name, **obj}, separators=(",", ":"))
        h.write_chunk(f"event: {name}\ndata: {data}\n\n".encode())


HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
}


class CommandUpstream:
    """What llama-swap really does: exec ``cmd``, poll ``checkEndpoint``, proxy to ``proxy``."""

    def __init__(self, model: ModelConfig, settings: Settings, health_timeout: int) -> None:
        self.model = model
        self.settings = settings
        self.health_timeout = health_timeout
        self.process: subprocess.Popen[bytes] | None = None
        target = urllib.parse.urlsplit(model.proxy)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 80
        self.base_path = target.path.rstrip("/")

    def start(self) -> None:
        LOGGER.info("starting model=%s cmd=%s", self.model.id, shlex.join(self.model.cmd))
        try:
            self.process = subprocess.Popen(
                self.model.cmd, env={**os.environ, **self.model.env}, start_new_session=True
            )
        except OSError as exc:
            raise UpstreamError(
                f"model {self.model.id}: cannot start {self.model.cmd[0]}: {exc.strerror}"
            ) from None
        if self.model.check_endpoint == "none":
            return
        deadline = time.monotonic() + self.health_timeout
        time.sleep(min(0.25, self.settings.health_poll_s))
        while True:
            if self.process.poll() is not None:
                raise UpstreamError(
                    f"model {self.model.id}: upstream command exited prematurely "
                    f"with code {self.process.returncode}"
                )
            if self._healthy():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise UpstreamError(
                    f"model {self.model.id}: health check timed out after {self.health_timeout} s"
                )
            time.sleep(self.settings.health_poll_s)

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request("GET", self.base_path + self.model.check_endpoint)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self.model.cmd_stop:
            subprocess.run(
                shlex.split(self.model.cmd_stop.replace("${PID}", str(process.pid))), check=False
            )
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=self.model.unload_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def serve(self, h: Handler, path: str, body: bytes) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise UpstreamError(f"model {self.model.id}: upstream exited")
        if self.model.use_model_name and body:
            with contextlib.suppress(ValueError):
                req = json.loads(body)
                req["model"] = self.model.use_model_name
                body = json.dumps(req).encode()
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=3600)
        try:
            conn.request(h.command, self.base_path + path, body=body or None, headers=headers)
            resp = conn.getresponse()
        except OSError as exc:
            conn.close()
            raise UpstreamError(f"model {self.model.id}: upstream unreachable: {exc}") from None
        with contextlib.closing(conn):
            h.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    h.send_header(key, value)
            h.send_header("X-Accel-Buffering", "no")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            while chunk := resp.read1(65536):  # pass bytes on as they arrive (SSE)
                h.write_chunk(chunk)
            h.end_stream()


# --------------------------------------------------------------------------- scheduler


class TooManyRequests(Exception):
    """concurrencyLimit reached: answered with 429 before anything is loaded."""


@dataclass
class ModelState:
    config: ModelConfig
    upstream: Upstream
    state: str = "stopped"  # stopped | starting | ready | stopping
    active: int = 0  # requests being served
    admitted: int = 0  # requests counted against concurrencyLimit (queued + served)
    last_used: float = 0.0
    attempt: int = 0
    error: str = ""


class Scheduler:
    """llama-swap's FIFO scheduler with the group swapper (backends.md b.4).

    A request for a ready model is served at once. Otherwise it joins a swap in flight for the
    same model, or waits while its evict set collides with another swap or still has requests
    in flight, or else starts the swap: stop the evict set, start the model, wait for ready.
    """

    def __init__(self, config: Config, make_upstream: Callable[[ModelConfig], Upstream]) -> None:
        self.config = config
        self.models = {mid: ModelState(m, make_upstream(m)) for mid, m in config.models.items()}
        self.cond = threading.Condition()
        self.stats: dict[str, Any] = {
            "swaps": 0,
            "unloads": 0,
            "rejected": 0,
            "cancelled": 0,
            "starts": {},
        }

    def evict_set(self, model_id: str) -> list[str]:
        """Running models that must stop before ``model_id`` may start (group rules)."""
        group = self.config.group_of(model_id)
        evict = []
        for other_id, other in self.models.items():
            if other_id == model_id or other.state == "stopped":
                continue
            other_group = self.config.group_of(other_id)
            if other_group is group:
                if group.swap:
                    evict.append(other_id)
            elif group.exclusive and not other_group.persistent:
                evict.append(other_id)
        return evict

    def admit(self, model_id: str) -> ModelState:
        with self.cond:
            st = self.models[model_id]
            if st.admitted >= st.config.concurrency_limit:
                self.stats["rejected"] += 1
                raise TooManyRequests(f"too many requests for model {model_id}")
            st.admitted += 1
            return st

    def acquire(self, st: ModelState, cancelled: Callable[[], bool] | None = None) -> None:
        """Block until ``st`` is ready and count one request in flight on it.

        ``cancelled`` is polled while queued: a client that went away leaves the queue
        (llama-swap's OnCancel)."""
        joined: int | None = None
        waited = False
        with self.cond:
            while True:
                if waited and cancelled is not None and cancelled():
                    self.stats["cancelled"] += 1
                    raise ClientGone(st.config.id)
                if st.state == "ready":
                    st.active += 1
                    return
                if joined == st.attempt and st.state == "stopped" and st.error:
                    raise UpstreamError(st.error)  # the swap we joined failed
                if st.state in ("starting", "stopping"):
                    joined = st.attempt if st.state == "starting" else None
                    self.cond.wait(0.05 if cancelled else None)
                    waited = True
                    continue
                evict = [self.models[m] for m in self.evict_set(st.config.id)]
                if any(e.state in ("starting", "stopping") or e.active for e in evict):
                    # collides with a swap in flight, or must drain first
                    self.cond.wait(0.05 if cancelled else None)
                    waited = True
                    continue
                for other in evict:
                    other.state = "stopping"
                st.state, st.attempt, st.error = "starting", st.attempt + 1, ""
                self.stats["swaps"] += 1
                self.stats["starts"][st.config.id] = self.stats["starts"].get(st.config.id, 0) + 1
                break
        for other in evict:
            self._stop(other, "swapped out")
        try:
            st.upstream.start()
        except Exception as exc:
            with self.cond:
                st.state, st.error = "stopped", str(exc)
                self.cond.notify_all()
            LOGGER.error("%s", exc)
            raise UpstreamError(str(exc)) from None
        with self.cond:
            st.state = "ready"
            st.active += 1
            self.cond.notify_all()
        LOGGER.info("model ready model=%s", st.config.id)

    def release(self, st: ModelState, *, served: bool) -> None:
        with self.cond:
            if served:
                st.active -= 1
            st.admitted -= 1
            st.last_used = time.time()
            self.cond.notify_all()

    def _stop(self, st: ModelState, why: str) -> None:
        LOGGER.info("stopping model=%s reason=%s", st.config.id, why)
        with contextlib.suppress(Exception):
            st.upstream.stop()
        with self.cond:
            st.state = "stopped"
            self.stats["unloads"] += 1
            self.cond.notify_all()

    def unload(self, model_ids: list[str] | None = None) -> None:
        """Unload models (all by default) once their in-flight requests are done."""
        for model_id in model_ids if model_ids is not None else list(self.models):
            st = self.models[model_id]
            with self.cond:
                while st.state in ("starting", "stopping") or (st.state == "ready" and st.active):
                    self.cond.wait()
                if st.state != "ready":
                    continue
                st.state = "stopping"
            self._stop(st, "unload requested")

    def expire_idle(self) -> None:
        """The ttl ticker: unload idle ready models whose ttl ran out."""
        now = time.time()
        with self.cond:
            due = [
                st
                for st in self.models.values()
                if st.state == "ready"
                and not st.active
                and not st.admitted
                and st.config.ttl > 0
                and now - st.last_used >= st.config.ttl
            ]
            for st in due:
                st.state = "stopping"
        for st in due:
            self._stop(st, "ttl expired")


# --------------------------------------------------------------------------- HTTP layer


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed the connection mid-stream."""


class HttpServer(http.server.ThreadingHTTPServer):
    """One thread per connection; a client that hangs up is not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 plumbing plus route dispatch to the LlamaSwapStandin."""

    protocol_version = "HTTP/1.1"
    server_version = "llama-swap-standin"
    sys_version = ""
    app: LlamaSwapStandin
    body: bytes = b""

    def log_message(self, format: str, *args: Any) -> None:
        LOGGER.debug("http %s", format % args)

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while (size := int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)) > 0:
                raw += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return raw
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def client_gone(self) -> bool:
        """True once the client closed its connection (readable, and reading gives EOF)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def send_json(self, status: int, obj: Any) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def send_text(self, status: int, text: str) -> None:
        self.send_bytes(status, text.encode(), "text/plain; charset=utf-8")

    def send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_json(self, status: int, message: str) -> None:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            404: "not_found_error",
            429: "rate_limit_error",
            502: "api_error",
        }.get(status, "api_error")
        self.send_json(status, {"error": {"code": status, "message": message, "type": kind}})

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ClientGone from exc

    def end_stream(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def do_GET(self) -> None:
        self.app.dispatch(self)

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET


MODEL_POST_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/completion",
    "/infill",
    "/reranking",
    "/rerank",
    "/v1/rerank",
    "/v1/reranking",
)


@dataclass
class Settings:
    """Stand-in-only knobs (environment variables STANDIN_*)."""

    mode: str = "simulate"  # simulate | exec | auto
    load_ms_per_gb: float = 200.0
    tokens_per_s: float = 50.0
    health_poll_s: float = 1.0
    ttl_tick_s: float = 1.0
    watch_poll_s: float = 1.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        mode = env.get("STANDIN_MODE", "simulate") or "simulate"
        if mode not in ("simulate", "exec", "auto"):
            raise ConfigError(f"STANDIN_MODE: expected simulate, exec or auto, got {mode!r}")

        def number(name: str, default: float) -> float:
            try:
                return float(env.get(name) or default)
            except ValueError:
                raise ConfigError(f"{name}: expected a number, got {env[name]!r}") from None

        return cls(
            mode=mode,
            load_ms_per_gb=number("STANDIN_LOAD_MS_PER_GB", 200),
            tokens_per_s=number("STANDIN_TOKENS_PER_S", 50),
            health_poll_s=number("STANDIN_HEALTH_POLL_MS", 1000) / 1000,
            ttl_tick_s=number("STANDIN_TTL_TICK_MS", 1000) / 1000,
        )


class LlamaSwapStandin:
    """The server: config + scheduler + routes; reloads on -watch-config."""

    def __init__(
        self,
        config: Config,
        settings: Settings,
        host: str,
        port: int,
        config_path: Path | None = None,
        watch: bool = False,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.watch = watch
        self.started = int(time.time())
        self.scheduler = self._scheduler(config)
        self._stop = threading.Event()
        handler = type("BoundHandler", (Handler,), {"app": self})
        self.httpd = HttpServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.get_routes: dict[str, Callable[[Handler], None]] = {
            "/health": lambda h: h.send_text(200, "OK"),
            "/v1/models": self.list_models,
            "/models": self.list_models,
            "/running": self.running,
            "/unload": self.unload_all,
            "/api/version": lambda h: h.send_json(
                200, {"version": VERSION, "commit": COMMIT, "build_date": "standin"}
            ),
            "/standin/stats": self.stats,
        }

    @property
    def config(self) -> Config:
        return self.scheduler.config

    def _scheduler(self, config: Config) -> Scheduler:
        for warning in config.warnings:
            LOGGER.warning("%s", warning)
        return Scheduler(config, lambda model: self._make_upstream(model, config))

    def _make_upstream(self, model: ModelConfig, config: Config) -> Upstream:
        mode = self.settings.mode
        if mode == "auto":
            exe = model.cmd[0]
            found = (
                shutil.which(exe) if "/" not in exe else (exe if os.access(exe, os.X_OK) else None)
            )
            mode = "exec" if found else "simulate"
        if mode == "exec":
            return CommandUpstream(model, self.settings, config.health_check_timeout)
        return SimulatedUpstream(model, self.settings)

    # -- dispatch

    def dispatch(self, h: Handler) -> None:
        h.body = h.read_body()  # up front: an early error never leaves it on the connection
        split = urllib.parse.urlsplit(h.path)
        path = split.path
        try:
            if path != "/health" and not self._authorized(h):
                raise ApiError(401, "unauthorized: invalid or missing API key")
            if path.startswith("/upstream/"):
                self.upstream(h, path, split.query)
            elif h.command == "POST" and path in MODEL_POST_ROUTES:
                self.model_request(h, path)
            elif h.command == "POST" and path == "/api/models/unload":
                self.unload_all(h)
            elif h.command == "POST" and path.startswith("/api/models/unload/"):
                self.unload_one(h, urllib.parse.unquote(path.removeprefix("/api/models/unload/")))
            elif h.command in ("GET", "HEAD") and path in self.get_routes:
                self.get_routes[path](h)
            else:
                raise ApiError(404, f"404 page not found: {h.command} {path}")
        except ApiError as exc:
            h.send_error_json(exc.status, exc.message)
        except TooManyRequests as exc:
            h.send_error_json(429, str(exc))
        except UpstreamError as exc:
            h.send_error_json(502, str(exc))
        except ClientGone:
            h.close_connection = True

    def _authorized(self, h: Handler) -> bool:
        keys = self.config.api_keys
        if not keys:
            return True
        bearer = h.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return bearer in keys or h.headers.get("x-api-key", "") in keys

    # -- model traffic

    def _model_id(self, name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise ApiError(400, "missing or invalid 'model' key in the request body")
        model_id = self.config.resolve(name)
        if model_id is None:
            raise ApiError(404, f"could not find a model named {name!r}")
        return model_id

    def model_request(self, h: Handler, path: str) -> None:
        body = h.body
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(request, dict):
            raise ApiError(400, "the request body must be a JSON object")
        self._serve(h, self._model_id(request.get("model")), path, body)

    def upstream(self, h: Handler, path: str, query: str) -> None:
        rest = path.removeprefix("/upstream/")
        # A model id or an alias (llama-swap resolves it like a request's "model"); names may
        # contain "/": take the longest known prefix.
        names = [*self.config.models, *(a for m in self.config.models.values() for a in m.aliases)]
        for name in sorted(names, key=len, reverse=True):
            if rest == name or rest.startswith(name + "/"):
                sub = rest[len(name) :] or "/"
                model_id = self.config.resolve(name)
                assert model_id is not None
                self._serve(h, model_id, sub + (f"?{query}" if query else ""), h.body)
                return
        raise ApiError(404, f"could not find a model for /upstream/{rest}")

    def _serve(self, h: Handler, model_id: str, path: str, body: bytes) -> None:
        scheduler = self.scheduler
        st = scheduler.admit(model_id)
        served = False
        try:
            scheduler.acquire(st, h.client_gone)
            served = True
            st.upstream.serve(h, path, body)
        finally:
            scheduler.release(st, served=served)

    # -- listing and ops

    def list_models(self, h: Handler) -> None:
        data = []
        for model_id in sorted(self.config.models):
            st = self.scheduler.models[model_id]
            model = st.config
            if model.unlisted:
                continue
            record: dict[str, Any] = {
                "id": model_id,
                "object": "model",
                "created": self.started,
                "owned_by": "llama-swap",
            }
            if model.name:
                record["name"] = model.name
            if model.description:
                record["description"] = model.description
            record["meta"] = {"llamaswap": {**model.metadata, "aliases": model.aliases}}
            record["status"] = {"value": "loaded" if st.state == "ready" else "unloaded"}
            data.append(record)
            if self.config.include_aliases_in_list:
                data += [{**record, "id": alias} for alias in model.aliases]
        h.send_json(200, {"object": "list", "data": data})

    def running(self, h: Handler) -> None:
        items = []
        for model_id, st in sorted(self.scheduler.models.items()):
            if st.state == "stopped":
                continue
            model = st.config
            items.append(
                {
                    "model": model_id,
                    "state": st.state,
                    "cmd": shlex.join(model.cmd),
                    "proxy": model.proxy,
                    "ttl": model.ttl,
                    "name": model.name,
                    "description": model.description,
                }
            )
        h.send_json(200, {"running": items})

    def unload_all(self, h: Handler) -> None:
        self.scheduler.unload()
        h.send_text(200, "OK")

    def unload_one(self, h: Handler, name: str) -> None:
        self.scheduler.unload([self._model_id(name)])
        h.send_text(200, "OK")

    def stats(self, h: Handler) -> None:
        """Stand-in only: swap/unload counters and per-model state for tests."""
        sched = self.scheduler
        with sched.cond:
            h.send_json(
                200,
                {
                    **sched.stats,
                    "models": {
                        mid: {"state": st.state, "active": st.active, "admitted": st.admitted}
                        for mid, st in sched.models.items()
                    },
                },
            )

    # -- lifecycle

    def _ticker(self) -> None:
        mtime = self._config_mtime()
        next_watch = time.monotonic() + self.settings.watch_poll_s
        while not self._stop.wait(min(self.settings.ttl_tick_s, self.settings.watch_poll_s)):
            self.scheduler.expire_idle()
            if self.watch and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + self.settings.watch_poll_s
                current = self._config_mtime()
                if current != mtime:
                    mtime = current
                    self.reload()

    def _config_mtime(self) -> float:
        try:
            return self.config_path.stat().st_mtime if self.config_path else 0.0
        except OSError:
            return 0.0

    def reload(self) -> None:
        """-watch-config: a valid new config replaces the old one and stops EVERY model."""
        assert self.config_path is not None
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            LOGGER.error("config reload failed, keeping the old config: %s", exc)
            return
        old, self.scheduler = self.scheduler, self._scheduler(config)
        old.unload()
        LOGGER.info("config reloaded from %s", self.config_path)

    def preload(self) -> None:
        for model_id in self.config.preload:
            st = self.scheduler.admit(model_id)
            try:
                self.scheduler.acquire(st)
                self.scheduler.release(st, served=True)
            except UpstreamError as exc:
                self.scheduler.release(st, served=False)
                LOGGER.error("preload of %s failed: %s", model_id, exc)

    def serve_forever(self) -> None:
        threading.Thread(target=self._ticker, name="ttl", daemon=True).start()
        threading.Thread(target=self.preload, name="preload", daemon=True).start()
        LOGGER.info(
            "llama-swap STAND-IN %s listening on port %d (mode %s)",
            VERSION,
            self.port,
            self.settings.mode,
        )
        try:
            self.httpd.serve_forever(poll_interval=0.1)
        finally:
            self._stop.set()

    def shutdown(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.scheduler.unload()


# --------------------------------------------------------------------------- in-process helper


@dataclass
class RunningStandin:
    """A stand-in on 127.0.0.1 in a thread; ``url, stop = start_in_thread(...)`` also works."""

    url: str
    app: LlamaSwapStandin
    thread: threading.Thread

    def stop(self) -> None:
        self.app.shutdown()
        self.thread.join(timeout=10)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.url, self.stop))

    def __enter__(self) -> RunningStandin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    config: str | dict[str, Any] | Path,
    *,
    mode: str = "simulate",
    load_ms_per_gb: float = 50.0,
    tokens_per_s: float = 0.0,
    health_poll_s: float = 0.05,
    ttl_tick_s: float = 0.05,
    watch: bool = False,
) -> RunningStandin:
    """Start a llama-swap stand-in on 127.0.0.1:<free port> with fast test timings.

    ``config`` is YAML text, an already-parsed dict, or a path (needed for ``watch``). Example::

        with start_in_thread("models:\\n  a:\\n    cmd: llama-server -m a.gguf\\n") as swap:
            urllib.request.urlopen(swap.url + "/v1/models")
    """
    path = config if isinstance(config, Path) else None
    if isinstance(config, Path):
        parsed = load_config(config)
    elif isinstance(config, str):
        parsed = parse_config(load_yaml(config))
    else:
        parsed = parse_config(config)
    settings = Settings(
        mode=mode,
        load_ms_per_gb=load_ms_per_gb,
        tokens_per_s=tokens_per_s,
        health_poll_s=health_poll_s,
        ttl_tick_s=ttl_tick_s,
        watch_poll_s=ttl_tick_s,
    )
    app = LlamaSwapStandin(parsed, settings, "127.0.0.1", 0, path, watch)
    thread = threading.Thread(target=app.serve_forever, name="llama-swap-standin", daemon=True)
    thread.start()
    return RunningStandin(f"http://127.0.0.1:{app.port}", app, thread)


# --------------------------------------------------------------------------- CLI


def parse_listen(value: str) -> tuple[str, int]:
    """``-listen`` as Go reads it: ":8080" (all interfaces), "127.0.0.1:8080"."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"-listen: expected [host]:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    # Go's flag package accepts -flag and --flag alike.
    args_in = [
        re.sub(r"^--?(config|listen|watch-config|version)", r"--\1", a)
        for a in (sys.argv[1:] if argv is None else argv)
    ]
    parser = argparse.ArgumentParser(prog="llama-swap", description="llama-swap STAND-IN")
    parser.add_argument("--config", default="config.yaml", help="config file name")
    parser.add_argument("--listen", default=":8080", help="listen ip/port")
    parser.add_argument("--watch-config", action="store_true", help="reload config on change")
    parser.add_argument("--version", action="store_true", help="show version of build")
    args = parser.parse_args(args_in)
    if args.version:
        print(f"version: {VERSION} ({COMMIT}), built at standin (llama-swap STAND-IN)")
        return 0
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    try:
        config = load_config(args.config)
        host, port = parse_listen(args.listen)
        app = LlamaSwapStandin(
            config, Settings.from_env(), host, port, Path(args.config), args.watch_config
        )
    except (ConfigError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=app.shutdown).start())
    with contextlib.suppress(KeyboardInterrupt):
        app.serve_forever()
    app.scheduler.unload()
    return 0


if __name__ == "__main__":
    sys.exit(main())
