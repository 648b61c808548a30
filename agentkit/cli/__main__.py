"""`python -m agentkit.cli`: the `agentkit` command."""

from agentkit.cli import script

if __name__ == "__main__":
    script()
