"""A real MCP server (PyPI's `mcp`, 2.x) for Tether's tests, over stdio or streamable HTTP.

    python test_server.py stdio
    python test_server.py http PORT

Tools: echo (text), add (structured output), fail (isError), delete_file (a name an approval pattern matches),
secret (one an allow list leaves out), slow (answers after a while), crash (the process dies in the middle of the call), calls (how many calls
this process answered: it starts again from 0 after a restart), headers (the HTTP headers of the request), and
grow (adds the tool `late` and tells the client its tool list changed).
"""

import os
import sys

import anyio
from typing import TypedDict

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("tether-test")
answered = 0


def count() -> None:
    global answered
    answered += 1


@server.tool(description="Says the text back.")
def echo(text: str) -> str:
    count()
    return text


class Sum(TypedDict):
    sum: int


@server.tool(description="Adds two whole numbers.", structured_output=True)
def add(a: int, b: int) -> Sum:
    count()
    return {"sum": a + b}


@server.tool(description="Always fails, with the reason given.")
def fail(reason: str) -> str:
    count()
    raise ToolError(reason)


@server.tool(description="Pretends to delete a file.")
def delete_file(path: str) -> str:
    count()
    return f"deleted {path}"


@server.tool(description="Not for agents.")
def secret() -> str:
    return "the secret"


@server.tool(description="Kills the server in the middle of the call.")
def crash() -> str:
    os._exit(3)


@server.tool(description="Answers after the given seconds.")
async def slow(seconds: float) -> str:
    count()
    await anyio.sleep(seconds)
    return "slept"


@server.tool(description="How many calls this process answered.")
def calls() -> int:
    count()
    return answered


@server.tool(description="The HTTP headers of this call's request.")
def headers(ctx: Context) -> dict[str, str]:
    count()
    return {name.lower(): value for name, value in (ctx.headers or {}).items()}


@server.tool(description="Adds the tool late, and says the tool list changed.")
async def grow(ctx: Context) -> str:
    count()

    def late() -> str:
        return "late but here"

    server.add_tool(late, name="late", description="Added by grow.")
    await ctx.request_context.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]), streamable_http_path="/mcp")
    else:
        server.run("stdio")
