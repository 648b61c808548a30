"""`agentkit serve`: the Workers AI text-generation API on localhost, and a playground page.

```python
from agentkit import ScriptedRuntime
from agentkit.server import create_app

app = create_app(ScriptedRuntime(["Hello!"]))  # an ASGI app: run it with uvicorn
```

Needs the `server` extra: `pip install 'agentkit[server]'`.
"""

from agentkit.server.app import DEFAULT_MAX_BODY, DEFAULT_MAX_QUEUE, create_app, served_models

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_MAX_QUEUE", "create_app", "served_models"]
