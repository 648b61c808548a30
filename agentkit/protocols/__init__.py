"""Protocols that put an agent in front of other programs, and reach agents elsewhere: each
module speaks one protocol (`ag_ui`: streaming a run to a front end; `a2a`: agents talking to
agents) and needs its own extra."""
