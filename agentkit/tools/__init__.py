"""Functions to tools: schemas, dialects, foreign definitions and argument validation."""

from agentkit.tools.arguments import ValidatedArguments
from agentkit.tools.formats import DefinitionProblem
from agentkit.tools.options import ToolOptions
from agentkit.tools.signature import ToolDefinitionWarning
from agentkit.tools.source import ToolSource
from agentkit.tools.tool import Approval, Tool, tool, validate_tool_definitions
from agentkit.tools.toolset import Toolset

__all__ = [
    "Approval",
    "DefinitionProblem",
    "Tool",
    "ToolDefinitionWarning",
    "ToolOptions",
    "ToolSource",
    "Toolset",
    "ValidatedArguments",
    "tool",
    "validate_tool_definitions",
]
