"""Importing another blocker's configuration: Pi-hole and AdGuard Home.

`pihole` and `adguard` read the other program's files (never trusting them: sizes
are capped, zip member names are never used as paths, every value is checked) into
a `common.Plan`, a plain description of the rows to create. `common.plan_apply`
then checks each item through the models' clean() and the guard rails and writes
what is new in one transaction: all or nothing, and nothing twice. The
`importfrom` command is the only caller; it may also just print the plan.

Uses the models, the guard rails and the core's name and rule helpers; never the
DNS core's sockets, the runtime or the views.
"""
