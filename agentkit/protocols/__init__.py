"""Protocols that put an agent in front of other programs: each module speaks one protocol
(`ag_ui`: streaming a run to a front end) and needs its own extra."""
