"""Protocols that offer agents to other programs and reach agents elsewhere (A2A, AG-UI)."""
