"""OpenAPI services as tools: each operation of an OpenAPI 3.0 or 3.1 document becomes a tool
that calls the service over HTTP, with its addresses checked (no calls to loopback, private or
link-local addresses unless allowed) and credentials the model never sees.

Reading YAML documents needs `pyyaml`: `pip install 'agentkit[openapi]'`; JSON needs nothing.
"""

from agentkit.openapi.auth import ENV_VARIABLES, OpenAPIAuth
from agentkit.openapi.network import RequestRefused, Resolver, address_problem, system_resolver
from agentkit.openapi.source import OpenAPIError, OpenAPITools, OperationFilter
from agentkit.openapi.spec import Body, Operation, Parameter

__all__ = [
    "ENV_VARIABLES",
    "Body",
    "OpenAPIAuth",
    "OpenAPIError",
    "OpenAPITools",
    "Operation",
    "OperationFilter",
    "Parameter",
    "RequestRefused",
    "Resolver",
    "address_problem",
    "system_resolver",
]
