"""The trust boundary for commands: the shadow workspace they run in, bubblewrap around them,
their processes, and the policy that says which may run. Nothing here imports the agent."""
