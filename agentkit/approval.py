"""Pausing a run for a person's approval; kept as an import path of `agentkit.agent.approval`."""

from agentkit.agent.approval import Decisions, check_decisions, denial, fingerprint, release

__all__ = ["Decisions", "check_decisions", "denial", "fingerprint", "release"]


def parse_denials(items: list[str]) -> dict[str, str]:
    """`--deny` values, `ID` or `ID=REASON`, as `resume`'s `deny`."""
    from agentkit.errors import UserError

    deny = {}
    for item in items:
        call_id, _, reason = item.partition("=")
        if not call_id:
            raise UserError(f"--deny: expected ID or ID=REASON (got {item!r})")
        deny[call_id] = reason
    return deny
