"""The command line (`python -m core ...` or `marketplace ...`): subcommands over the services,
with JSON outputs that are public contracts."""
