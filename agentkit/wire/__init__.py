"""Wire codecs: each API agentkit speaks, written once and used both ways.

- `workers_ai`: the Workers AI text-generation contract (requests, results, stream chunks, the
  envelope and its error codes);
- `openai`: OpenAI chat completions (requests, completions, stream chunks, `tool_choice`).

Runtimes use them as clients, `agentkit serve` as a server. A codec maps the internal types of
`agentkit.model_api` to one API and back, and knows nothing of tools, runtimes or HTTP.

The request types of both are exported here: `GenerationRequest` (a Workers AI request body,
either form, which every runtime also takes) with its `FunctionCode`, and `ChatRequest` (a
decoded chat-completions body).
"""

from agentkit.wire.openai import ChatRequest
from agentkit.wire.workers_ai import FunctionCode, GenerationRequest

__all__ = ["ChatRequest", "FunctionCode", "GenerationRequest"]
