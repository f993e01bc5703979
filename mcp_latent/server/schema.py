"""Keeping the tool manifest small and errors readable: compact input and output schemas, minified results,
and wording for argument errors that says what was wrong and what to send."""

from __future__ import annotations

import difflib
import json
import logging
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

if TYPE_CHECKING:  # imported at run time only where a service is built: numpy and the engine come with it
    pass

log = logging.getLogger(__name__)


def minified(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def compact_result(data: dict[str, Any], structured: bool = True) -> CallToolResult:
    """The result as minified JSON text, plus the same data as structured content unless switched off."""
    return CallToolResult(
        content=[TextContent(type="text", text=minified(data))], structured_content=data if structured else None
    )


def compact_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An argument schema without what the calling model doesn't need: titles, the `null` branch of optional
    arguments (leaving one out is how to send none), defaults of null or false, `additionalProperties: true`."""
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {
            key: value
            for key, value in prop.items()
            if key != "title" and (key, value) != ("additionalProperties", True)
        }
        branches = [branch for branch in prop.pop("anyOf", []) if branch != {"type": "null"}]
        if len(branches) == 1:
            prop = {**branches[0], **prop}
        elif branches:
            prop["anyOf"] = branches
        if prop.get("default", True) in (None, False):
            del prop["default"]
        properties[name] = prop
    compact: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        compact["required"] = schema["required"]
    return compact


def compact_output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema cut to its first level: each field's JSON type and which fields are always there.

    Still true (clients validate structured content against it), and the shape below that level is in the
    tool's description, where the calling model reads it anyway."""
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        types = [branch.get("type") for branch in prop.get("anyOf", [prop])]
        if not all(isinstance(kind, str) for kind in types):
            types = []  # a $ref or a nested union: any JSON value
        properties[name] = {"type": types[0] if len(types) == 1 else types} if types else {}
    compact: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        compact["required"] = schema["required"]
    return compact


TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a list",
}


def describe_type(schema: dict[str, Any]) -> str:
    """`{"type": "array", "items": {"type": "string"}}` -> 'a list of strings'."""
    if "anyOf" in schema:
        return " or ".join(describe_type(branch) for branch in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict) and schema["items"].get("type") == "string":
        return "a list of strings"
    return TYPE_WORDS.get(kind, "a JSON value") if isinstance(kind, str) else "a JSON value"


def argument_names(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    names = [f"`{name}`" + ("" if name in required else "?") for name in schema.get("properties", {})]
    return ", ".join(names) or "none"


def unknown_arguments_error(tool: str, unknown: list[str], schema: dict[str, Any]) -> str:
    valid = list(schema.get("properties", {}))
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hints.append(f"`{name}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
    return (
        f"{tool} takes no argument {', '.join(hints)}; send only {argument_names(schema)} (? = optional)."
        if valid
        else f"{tool} takes no arguments; send {{}}."
    )


def invalid_arguments_error(tool: str, error: ValidationError, schema: dict[str, Any]) -> str:
    """The pydantic error as one sentence per argument: which argument, what it must be (never pydantic's text)."""
    properties = schema.get("properties", {})
    problems: dict[str, str] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        if name in problems:
            continue
        expected = describe_type(properties.get(name, {}))
        if item["type"] == "missing":
            problems[name] = f"`{name}` is required ({expected})"
        elif len(item["loc"]) > 1:  # inside a list or object: name the element that is wrong
            where = name + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"][1:])
            problems[name] = f"`{name}` must be {expected}, but `{where}` is {type_name(item['input'])}"
        else:
            problems[name] = f"`{name}` must be {expected}, not {type_name(item['input'])}"
    return f"{tool}: {'; '.join(problems.values())}."


def type_name(value: Any) -> str:
    for kind, words in (
        (bool, "true/false"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (dict, "an object"),
    ):
        if isinstance(value, kind):
            return words
    return "null" if value is None else type(value).__name__


class LatentTool(Tool):
    """A tool that refuses unknown arguments and reports bad ones in one sentence.

    MCPServer validates arguments inside `Tool.run` (the pydantic model of the function's signature) and would
    quietly drop names it does not know and return pydantic's multi-line text with links. This is the one place
    where arguments meet the schema, so both checks live here. Every error reads `<tool>: <what to do>` (the SDK's
    own prefix, "Error executing tool <tool>: ", is kept only for crashes, which carry no other text)."""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        unknown = [name for name in arguments if name not in self.parameters.get("properties", {})]
        if unknown:
            raise ToolError(unknown_arguments_error(self.name, unknown, self.parameters))
        try:
            # Strict types: pydantic's lax mode would take k="5" as 5 and detail="yes" as true, so a caller's wrong
            # types pass unnoticed (and a string that only looks like a number may not be one). JSON-in-a-string
            # lists and objects are still unpacked first, as the SDK does for clients that send them that way.
            self.fn_metadata.arg_model.model_validate(self.fn_metadata.pre_parse_json(arguments), strict=True)
        except ValidationError as exc:
            raise ToolError(invalid_arguments_error(self.name, exc, self.parameters)) from exc
        try:
            return await super().run(arguments, context, convert_result)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):  # the arguments failed the schema; nothing ran
                raise ToolError(invalid_arguments_error(self.name, cause, self.parameters)) from cause
            if isinstance(cause, ToolError):  # an engine error: one prefix style for every error the model reads
                raise ToolError(f"{self.name}: {cause}") from cause
            raise
