"""Code that runs inside instance processes: the zygote that forks them and the worker
that feeds an agent from its ring. Meets the daemon only through ``supervisor.transport``."""
